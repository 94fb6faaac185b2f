package subhost

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/overlay"
)

// InitArg0 is argv[0] of a subhost's PID 1 (ovpkg itself): app.Run hands
// a process started under this name to InitMain.
const InitArg0 = "ovpkg-subhost-init"

// CardDir is one directory the card overlays, mounted in a subhost over
// the card's layers (--card, try).
type CardDir struct {
	Dir    string   `json:"dir"`    // relative to the root, e.g. "usr"
	Lowers []string `json:"lowers"` // topmost first, the base directory last
}

// initSpec is what the supervisor tells PID 1 (JSON on fd 3).
type initSpec struct {
	Name      string        `json:"name"`
	Lower     string        `json:"lower"`
	Upper     string        `json:"upper"`
	Work      string        `json:"work"`
	Live      string        `json:"live"`
	CardDirs  []CardDir     `json:"card_dirs,omitempty"`
	BaseView  string        `json:"base_view,omitempty"` // where to bind the card root's own filesystem (non-recursive)
	BaseRoot  string        `json:"base_root,omitempty"` // the card's root
	RAMSize   string        `json:"ram_size,omitempty"`
	Shares    []Share       `json:"shares,omitempty"`
	Start     []string      `json:"start,omitempty"`
	Premount  string        `json:"premount,omitempty"`
	Postmount string        `json:"postmount,omitempty"`
	Init      string        `json:"init,omitempty"`
	Stop      time.Duration `json:"stop"`
	HookEnv   []string      `json:"hook_env,omitempty"`
}

// Status lines PID 1 writes on fd 4.
const (
	msgReady = "ready"
	msgError = "error "
	msgEnded = "ended "
	msgNote  = "note "
)

// servicePath is the PATH services and INIT get.
const servicePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// InitMain is the subhost's PID 1: it mounts the subhost's root, pivots
// into it, starts the services and reaps until it is told to stop.
func InitMain() int {
	status := os.NewFile(4, "status")
	specf := os.NewFile(3, "spec")
	if status == nil || specf == nil || os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, InitArg0+": not started by ovpkg subhost start")
		return 2
	}
	say := func(s string) { fmt.Fprintln(status, strings.ReplaceAll(s, "\n", "; ")) }
	var spec initSpec
	if err := json.NewDecoder(specf).Decode(&spec); err != nil {
		say(msgError + "reading the subhost's description: " + err.Error())
		return 1
	}
	specf.Close()
	unix.CloseOnExec(4)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGPWR)
	r := newReaper()
	if err := r.protect(); err != nil {
		say(msgNote + err.Error())
	}
	go r.run()
	if err := setupRoot(&spec, r); err != nil {
		say(msgError + err.Error())
		return 1
	}
	env := []string{"PATH=" + servicePath, "HOME=/", "TERM=dumb", "container=ovpkg"}
	var started []string
	stopReq := ""
	if spec.Init != "" {
		if _, _, err := r.spawn([]string{"/bin/sh", "-c", spec.Init}, env); err != nil {
			say(msgError + fmt.Sprintf("INIT %q: %v", spec.Init, err))
			r.killAll(spec.Stop)
			return 1
		}
	} else {
	services:
		for _, s := range spec.Start {
			select {
			case sig := <-sigs:
				stopReq = "stopped by " + unix.SignalName(sig.(syscall.Signal)) + " while starting services"
				break services
			default:
			}
			started = append(started, s)
			code, err := r.runService(s, "start", env, 0)
			if err != nil || code != 0 {
				say(msgNote + fmt.Sprintf("service %s start: %s", s, exitText(code, err)))
			}
		}
	}
	if stopReq == "" {
		say(msgReady)
		sig := <-sigs
		stopReq = "stopped by " + unix.SignalName(sig.(syscall.Signal))
	}
	for i := len(started) - 1; i >= 0; i-- {
		code, err := r.runService(started[i], "stop", env, spec.Stop)
		if err != nil || code != 0 {
			say(msgNote + fmt.Sprintf("service %s stop: %s", started[i], exitText(code, err)))
		}
	}
	if n := r.killAll(spec.Stop); n > 0 {
		stopReq += fmt.Sprintf("; %d process(es) did not end within %v of SIGTERM and were killed", n, spec.Stop)
	}
	say(msgEnded + stopReq)
	return 0
}

func exitText(code int, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("exit status %d", code)
}

// setupRoot builds the subhost's root in this (new, private) mount
// namespace and pivots into it.
func setupRoot(s *initSpec, r *reaper) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the mount namespace private: %w", err)
	}
	if err := unix.Sethostname([]byte(s.Name)); err != nil {
		return fmt.Errorf("setting the hostname: %w", err)
	}
	if err := r.hook("PREMOUNT", s.Premount, s.HookEnv); err != nil {
		return err
	}
	for _, d := range s.CardDirs {
		for _, p := range []string{filepath.Join(s.Upper, d.Dir), filepath.Join(s.Work, cardWork(d.Dir))} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		}
	}
	if filepath.Clean(s.Live) == filepath.Clean(s.Lower) {
		if err := unix.Mount(s.Live, s.Live, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("binding %s on itself: %w", s.Live, err)
		}
	} else {
		m := overlay.Mount{Target: s.Live, Lowers: []string{s.Lower}, Upper: s.Upper, Work: s.Work}
		if err := overlay.MountAs(m, s.Name); err != nil {
			return err
		}
	}
	if len(s.CardDirs) > 0 {
		if err := unix.Mount(s.BaseRoot, s.BaseView, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding the base root %s: %w", s.BaseRoot, err)
		}
		for _, d := range s.CardDirs {
			m := overlay.Mount{Target: filepath.Join(s.Live, d.Dir), Lowers: d.Lowers, Upper: filepath.Join(s.Upper, d.Dir), Work: filepath.Join(s.Work, cardWork(d.Dir))}
			if err := overlay.MountAs(m, s.Name); err != nil {
				return err
			}
		}
		if err := unix.Unmount(s.BaseView, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmounting the base view: %w", err)
		}
	}
	in := func(p string) string { return filepath.Join(s.Live, p) }
	type mnt struct {
		src, dst, fs string
		flags        uintptr
		data         string
	}
	ms := []mnt{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", "/dev", "tmpfs", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=755,size=1m"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}
	if s.RAMSize != "" {
		ms = append(ms, mnt{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=755,size=" + s.RAMSize})
	}
	for _, m := range ms {
		if err := os.MkdirAll(in(m.dst), 0o755); err != nil {
			return err
		}
		if err := mount.Mount(m.src, in(m.dst), m.fs, m.flags, m.data); err != nil {
			return err
		}
		if m.dst == "/dev" {
			if err := makeDev(in("/dev")); err != nil {
				return err
			}
		}
	}
	for _, sh := range s.Shares {
		dst := in(sh.Sub)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("SHARE %s:%s: %w", sh.Host, sh.Sub, err)
		}
		if err := unix.Mount(sh.Host, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("SHARE %s:%s: %w", sh.Host, sh.Sub, err)
		}
	}
	if err := r.hook("POSTMOUNT", s.Postmount, s.HookEnv); err != nil {
		return err
	}
	if err := unix.Chdir(s.Live); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", s.Live, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the host's mounts: %w", err)
	}
	return unix.Chdir("/")
}

// cardWork is the work directory of a card directory's overlay, beside
// the root overlay's own in WORK.
func cardWork(dir string) string { return "card-" + strings.ReplaceAll(dir, "/", "-") }

// makeDev fills a fresh /dev tmpfs with the usual nodes and links.
func makeDev(dev string) error {
	nodes := []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, n := range nodes {
		if err := unix.Mknod(filepath.Join(dev, n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod /dev/%s: %w", n.name, err)
		}
	}
	links := [][2]string{{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		name string
		mode uint32
	}{{"pts", 0o755}, {"shm", 0o1777}, {"mqueue", 0o755}} {
		if err := unix.Mkdir(filepath.Join(dev, d.name), d.mode); err != nil {
			return err
		}
	}
	return nil
}

// reaper is PID 1's child handling: every child, its own or one
// re-parented to it, is waited for; commands it started get their status.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
	empty   chan struct{} // gets a value whenever no child is left
	chld    chan os.Signal
	oomAdj  string // PID 1's oom_score_adj as inherited, given back to its children ("" = not protected)
}

// pid1OOMScoreAdj keeps the OOM killer off PID 1 while anything else of
// the subhost can go: a cgroup OOM (MEMORY) chooses by the processes' own
// memory, and PID 1, a Go program, is often the biggest of a small
// subhost; its death ends the whole subhost. -999 rather than -1000: as a
// last resort it can still be chosen.
const pid1OOMScoreAdj = "-999"

const oomScoreAdjFile = "/proc/self/oom_score_adj"

// protect lowers PID 1's oom_score_adj, remembering the inherited value
// for its children (spawn).
func (r *reaper) protect() error {
	b, err := os.ReadFile(oomScoreAdjFile)
	if err != nil {
		return fmt.Errorf("PID 1 stays as likely an OOM victim as any process: %w", err)
	}
	orig := strings.TrimSpace(string(b))
	if err := os.WriteFile(oomScoreAdjFile, []byte(pid1OOMScoreAdj), 0); err != nil {
		return fmt.Errorf("PID 1 stays as likely an OOM victim as any process: setting its oom_score_adj to %s: %w", pid1OOMScoreAdj, err)
	}
	r.oomAdj = orig
	return nil
}

func newReaper() *reaper {
	r := &reaper{waiters: map[int]chan unix.WaitStatus{}, empty: make(chan struct{}, 1), chld: make(chan os.Signal, 16)}
	signal.Notify(r.chld, unix.SIGCHLD)
	return r
}

func (r *reaper) run() {
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.ECHILD) {
				select {
				case r.empty <- struct{}{}:
				default:
				}
				break
			}
			if err != nil || pid <= 0 {
				break
			}
			r.mu.Lock()
			if c, ok := r.waiters[pid]; ok {
				c <- ws
				delete(r.waiters, pid)
			}
			r.mu.Unlock()
		}
		<-r.chld
	}
}

// spawn starts argv (argv[0] looked up in PATH) in its own session with
// stdio inherited (the subhost's log).
func (r *reaper) spawn(argv, env []string) (int, chan unix.WaitStatus, error) {
	path := argv[0]
	if !strings.Contains(path, "/") {
		p, ok := lookPath(path)
		if !ok {
			return 0, nil, fmt.Errorf("%s: not found in %s", path, servicePath)
		}
		path = p
	}
	c := make(chan unix.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	// A child inherits oom_score_adj at fork: PID 1 takes back its
	// inherited value for the fork only (spawn is PID 1's only fork, and
	// it holds r.mu), so that nothing it starts shares its protection.
	if r.oomAdj != "" {
		if err := os.WriteFile(oomScoreAdjFile, []byte(r.oomAdj), 0); err != nil {
			return 0, nil, fmt.Errorf("%s: giving it oom_score_adj %s: %w", path, r.oomAdj, err)
		}
		defer func() {
			if err := os.WriteFile(oomScoreAdjFile, []byte(pid1OOMScoreAdj), 0); err != nil {
				fmt.Fprintf(os.Stderr, "%s: PID 1 is no longer kept off the OOM killer: %v\n", InitArg0, err)
			}
		}()
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []uintptr{devNull(), 1, 2},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", path, err)
	}
	r.waiters[pid] = c
	return pid, c, nil
}

var (
	nullOnce sync.Once
	nullFD   uintptr
)

func devNull() uintptr {
	nullOnce.Do(func() {
		fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil {
			nullFD = uintptr(fd)
		}
	})
	return nullFD
}

func lookPath(name string) (string, bool) {
	for _, d := range filepath.SplitList(servicePath) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// runService runs `service S ACTION` (or /etc/init.d/S ACTION where the
// subhost has no service command) and waits for it, at most timeout
// (0 = no limit); on timeout its session is killed.
func (r *reaper) runService(s, action string, env []string, timeout time.Duration) (int, error) {
	argv := []string{"service", s, action}
	if _, ok := lookPath("service"); !ok {
		argv = []string{"/etc/init.d/" + s, action}
	}
	pid, c, err := r.spawn(argv, env)
	if err != nil {
		return 0, err
	}
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case ws := <-c:
		return exitCode(ws), nil
	case <-tc:
		unix.Kill(-pid, unix.SIGKILL)
		<-c
		return 0, fmt.Errorf("no answer after %v; killed", timeout)
	}
}

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// hook runs a PREMOUNT/POSTMOUNT command with /bin/sh on the host side,
// before the pivot.
func (r *reaper) hook(key, cmd string, env []string) error {
	if cmd == "" {
		return nil
	}
	pid, c, err := r.spawn([]string{"/bin/sh", "-c", cmd}, append(os.Environ(), env...))
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	_ = pid
	if code := exitCode(<-c); code != 0 {
		return fmt.Errorf("%s %q failed with exit status %d", key, short(cmd), code)
	}
	return nil
}

// killAll ends every other process of the subhost: SIGTERM, up to
// timeout for them to go, then SIGKILL. It returns how many were still
// there for the SIGKILL.
func (r *reaper) killAll(timeout time.Duration) int {
	// Drain an old "empty" note: only one after the kill counts.
	select {
	case <-r.empty:
	default:
	}
	if err := unix.Kill(-1, unix.SIGTERM); errors.Is(err, unix.ESRCH) {
		return 0
	}
	select {
	case <-r.empty:
		return 0
	case <-time.After(timeout):
	}
	n := len(otherPids())
	unix.Kill(-1, unix.SIGKILL)
	for len(otherPids()) > 0 {
		select {
		case <-r.empty:
		case <-time.After(100 * time.Millisecond):
		}
	}
	return n
}

// otherPids lists the subhost's processes other than PID 1, from its
// own /proc.
func otherPids() []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		n := e.Name()
		if n != "1" && n[0] >= '0' && n[0] <= '9' {
			out = append(out, n)
		}
	}
	return out
}

// readStatus reads PID 1's status lines until EOF, calling fn for each.
func readStatus(rd io.Reader, fn func(string)) {
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		fn(sc.Text())
	}
}
