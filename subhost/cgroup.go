package subhost

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupParent is the directory below the cgroup v2 root that holds one
// cgroup per subhost.
const cgroupParent = "ovpkg"

// ErrNoCgroup2 is returned when no cgroup v2 hierarchy is mounted.
var ErrNoCgroup2 = errors.New("no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)")

// cgroup2Root finds the first cgroup2 mount in mountinfo that shows the
// hierarchy from its root (as seen from the caller's cgroup namespace),
// else the first that shows only a part of it (a container's cgroup
// bind-mounted on /sys/fs/cgroup): subhosts' cgroups are made below it.
// A mount point another filesystem was mounted over later (a fresh sysfs
// on /sys) does not count: the path must still lead to a cgroup2.
func cgroup2Root(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", err
	}
	defer f.Close()
	part := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, x := range fields {
			if x == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				p := unescapeMount(fields[4])
				if !isCgroup2(p) {
					continue
				}
				if fields[3] == "/" {
					return p, nil
				}
				if part == "" {
					part = p
				}
			}
		}
	}
	if part != "" {
		return part, nil
	}
	return "", ErrNoCgroup2
}

// isCgroup2 says whether path is on a cgroup2 filesystem (a variable for
// the tests' stand-in mountinfo).
var isCgroup2 = func(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && int64(st.Type) == unix.CGROUP2_SUPER_MAGIC
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// Limits are the cgroup v2 limits of a subhost.
type Limits struct {
	Memory int64 // memory.max bytes
	CPU    int64 // cpu.max quota per 100000 µs
	Pids   int64 // pids.max
}

func (l Limits) controllers() []string {
	var c []string
	if l.Memory > 0 {
		c = append(c, "memory")
	}
	if l.CPU > 0 {
		c = append(c, "cpu")
	}
	if l.Pids > 0 {
		c = append(c, "pids")
	}
	return c
}

// missingControllers says which of the limits' controllers the cgroup v2
// root does not offer (on hybrid systems they are bound to v1).
func missingControllers(root string, l Limits) []string {
	have, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	set := map[string]bool{}
	for _, c := range strings.Fields(string(have)) {
		set[c] = true
	}
	var miss []string
	for _, c := range l.controllers() {
		if !set[c] {
			miss = append(miss, c)
		}
	}
	return miss
}

// populatedRoot says why controllers cannot be enabled below root ("" when
// they can): cgroup v2 hands controllers to children only from a cgroup
// without processes of its own, and only the real root (which has no
// cgroup.type file) is exempt; a container's cgroup namespace root is not.
func populatedRoot(root string, l Limits) string {
	if len(l.controllers()) == 0 {
		return ""
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.type")); err != nil {
		return ""
	}
	n := len(cgroupProcs(root))
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d process(es) live in %s itself, and cgroup v2 hands controllers to child cgroups only from a cgroup without processes (it is not the real root): move them into a child cgroup first, or start the subhost where the cgroup2 root is the real one", n, root)
}

// makeCgroup creates root/ovpkg/NAME with the limits and returns its path.
// Controllers are enabled on the way down only when a limit needs them.
func makeCgroup(root, name string, l Limits) (string, error) {
	if miss := missingControllers(root, l); len(miss) > 0 {
		return "", fmt.Errorf("the limits need the cgroup v2 controller(s) %s, which %s does not offer (they may be bound to a cgroup v1 hierarchy)",
			strings.Join(miss, ", "), root)
	}
	parent := filepath.Join(root, cgroupParent)
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("cgroup %s: %w", parent, err)
	}
	if cs := l.controllers(); len(cs) > 0 {
		var en []string
		for _, c := range cs {
			en = append(en, "+"+c)
		}
		for _, d := range []string{root, parent} {
			if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte(strings.Join(en, " ")), 0); err != nil {
				hint := ""
				if why := populatedRoot(d, l); errors.Is(err, unix.EBUSY) && why != "" {
					hint = " (" + why + ")"
				}
				return "", fmt.Errorf("enabling cgroup controllers %s in %s: %w%s", strings.Join(cs, ","), d, err, hint)
			}
		}
	}
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("cgroup %s already exists (a subhost %s whose processes are still alive? `ovpkg subhost stop %s` clears it)", dir, name, name)
		}
		return "", fmt.Errorf("cgroup %s: %w", dir, err)
	}
	set := func(file, v string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil {
			os.Remove(dir)
			return fmt.Errorf("cgroup limit %s=%s: %w", file, v, err)
		}
		return nil
	}
	if l.Memory > 0 {
		if err := set("memory.max", strconv.FormatInt(l.Memory, 10)); err != nil {
			return "", err
		}
		// No swapping around the limit where swap accounting exists.
		os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
	}
	if l.CPU > 0 {
		if err := set("cpu.max", fmt.Sprintf("%d 100000", l.CPU)); err != nil {
			return "", err
		}
	}
	if l.Pids > 0 {
		if err := set("pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// cgroupProcs lists the PIDs in a cgroup (nil when it is gone).
func cgroupProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// removeCgroup kills whatever is left in dir (cgroup.kill, else SIGKILL
// to each PID), waits until it is empty and removes it. A missing cgroup
// is fine.
func removeCgroup(dir string) error {
	if dir == "" {
		return nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if len(cgroupProcs(dir)) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
			for _, p := range cgroupProcs(dir) {
				unix.Kill(p, unix.SIGKILL)
			}
		}
	}
	// Killed processes leave the cgroup once they are reaped; rmdir says
	// EBUSY until then.
	deadline := time.Now().Add(10 * time.Second)
	delay := time.Millisecond
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s (processes %v still in it): %w", dir, cgroupProcs(dir), err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// oomKills is the cgroup's oom_kill count from memory.events: processes
// the OOM killer killed because the cgroup reached memory.max (0 when
// unknown).
func oomKills(dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, "memory.events"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// oomNote is what the end of a subhost's record says about OOM kills in
// its cgroup while it ran ("" for none).
func oomNote(dir string, memory int64) string {
	n := oomKills(dir)
	if n == 0 {
		return ""
	}
	limit := fmt.Sprintf("%d bytes", memory)
	if memory%(1<<20) == 0 {
		limit = fmt.Sprintf("%dM", memory>>20)
	}
	return fmt.Sprintf("; the OOM killer killed %d process(es) in it (MEMORY=%s reached)", n, limit)
}
