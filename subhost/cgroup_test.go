package subhost

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makeCgroup on a stand-in cgroup root (plain files): the limits land in
// the cgroup v2 files with the values the kernel expects, controllers are
// enabled on the way down only when needed, and missing controllers are
// refused with the reason. (The real hierarchy here has memory, cpu and
// pids bound to cgroup v1; the e2e tests cover the cgroup itself.)
func TestMakeCgroupLimits(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cgroup.controllers", "cpuset cpu io memory pids\n")
	write("cgroup.subtree_control", "")
	// The kernel makes these files in a new cgroup; the stand-in needs them first.
	if err := os.MkdirAll(filepath.Join(root, "ovpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("ovpkg/cgroup.subtree_control", "")
	dir, err := makeCgroup(root, "web", Limits{Memory: 256 << 20, CPU: 50000, Pids: 64})
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, _ := os.ReadFile(filepath.Join(root, p))
		return strings.TrimSpace(string(b))
	}
	for f, want := range map[string]string{
		"ovpkg/web/memory.max": "268435456", "ovpkg/web/cpu.max": "50000 100000", "ovpkg/web/pids.max": "64",
		"ovpkg/web/memory.swap.max": "0", "cgroup.subtree_control": "+memory +cpu +pids", "ovpkg/cgroup.subtree_control": "+memory +cpu +pids",
	} {
		if got := read(f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	if dir != filepath.Join(root, "ovpkg", "web") {
		t.Errorf("dir %s", dir)
	}
	if _, err := makeCgroup(root, "web", Limits{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second cgroup: %v", err)
	}
	// No limits: no controller is enabled.
	write("cgroup.subtree_control", "")
	if _, err := makeCgroup(root, "plain", Limits{}); err != nil || read("cgroup.subtree_control") != "" {
		t.Errorf("plain: %v, subtree_control %q", err, read("cgroup.subtree_control"))
	}
	write("cgroup.controllers", "cpu\n")
	_, err = makeCgroup(root, "x", Limits{Memory: 1 << 20, Pids: 5})
	if err == nil || !strings.Contains(err.Error(), "memory, pids") {
		t.Errorf("missing controllers: %v", err)
	}
}

func TestCgroup2Root(t *testing.T) {
	over := map[string]bool{}
	real := isCgroup2
	isCgroup2 = func(p string) bool { return !over[p] }
	defer func() { isCgroup2 = real }()
	mi := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(mi, []byte("30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"), 0o644)
	if r, err := cgroup2Root(mi); err != nil || r != "/sys/fs/cgroup/unified" {
		t.Errorf("%q %v", r, err)
	}
	os.WriteFile(mi, []byte("30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"), 0o644)
	if _, err := cgroup2Root(mi); err != ErrNoCgroup2 {
		t.Errorf("%v", err)
	}
	// A container's own cgroup bind-mounted: used when nothing shows the root.
	os.WriteFile(mi, []byte("50 22 0:27 /box /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), 0o644)
	if r, err := cgroup2Root(mi); err != nil || r != "/sys/fs/cgroup" {
		t.Errorf("part: %q %v", r, err)
	}
	os.WriteFile(mi, []byte("50 22 0:27 /box /mnt/box\\040x rw - cgroup2 cgroup2 rw\n51 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), 0o644)
	if r, err := cgroup2Root(mi); err != nil || r != "/sys/fs/cgroup" {
		t.Errorf("root preferred: %q %v", r, err)
	}
	// Over-mounted by another filesystem: not a cgroup2 any more.
	over["/sys/fs/cgroup"] = true
	if r, err := cgroup2Root(mi); err != nil || r != "/mnt/box x" {
		t.Errorf("over-mounted root: %q %v", r, err)
	}
	os.WriteFile(mi, []byte("51 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), 0o644)
	if _, err := cgroup2Root(mi); err != ErrNoCgroup2 {
		t.Errorf("only over-mounted: %v", err)
	}
	// The real thing (this machine's, whichever it is) passes the check.
	over = map[string]bool{}
	isCgroup2 = real
	if r, err := cgroup2Root("/proc/self/mountinfo"); err == nil && !real(r) {
		t.Errorf("%s is not a cgroup2", r)
	}
}

func TestOOMNote(t *testing.T) {
	dir := t.TempDir()
	if n := oomNote(dir, 32<<20); n != "" {
		t.Errorf("no memory.events: %q", n)
	}
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n"), 0o644)
	if n := oomNote(dir, 32<<20); n != "; the OOM killer killed 2 process(es) in it (MEMORY=32M reached)" {
		t.Errorf("%q", n)
	}
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("oom 0\noom_kill 0\n"), 0o644)
	if n := oomNote(dir, 32<<20); n != "" {
		t.Errorf("none: %q", n)
	}
}

// A cgroup2 root that is not the real root (cgroup.type exists: a
// cgroup namespace's) with processes in it cannot hand controllers down.
func TestPopulatedRoot(t *testing.T) {
	root := t.TempDir()
	l := Limits{Pids: 10}
	os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte("12\n34\n"), 0o644)
	if why := populatedRoot(root, l); why != "" {
		t.Errorf("the real root (no cgroup.type): %q", why)
	}
	os.WriteFile(filepath.Join(root, "cgroup.type"), []byte("domain\n"), 0o644)
	if why := populatedRoot(root, l); !strings.Contains(why, "2 process(es) live in "+root+" itself") {
		t.Errorf("populated: %q", why)
	}
	if why := populatedRoot(root, Limits{}); why != "" {
		t.Errorf("no limits need no controllers: %q", why)
	}
	os.WriteFile(filepath.Join(root, "cgroup.procs"), nil, 0o644)
	if why := populatedRoot(root, l); why != "" {
		t.Errorf("empty: %q", why)
	}
}
