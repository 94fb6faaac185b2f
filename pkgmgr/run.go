package pkgmgr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitArg is the hidden first argument under which the ovpkg binary runs
// as the init of the package manager's PID namespace (InitMain). The app
// dispatches it before parsing the command line.
const InitArg = "__pm-init"

// envInitRoot passes the root to chroot into from Run to InitMain.
const envInitRoot = "OVPKG_PM_ROOT"

// ExitProtect is the init's exit code when it could not make the base
// read-only (the package manager did not run).
const ExitProtect = 125

// envInitFDs tells InitMain how many file descriptors to pass on to the
// package manager (3 + the status pipe).
const envInitFDs = "OVPKG_PM_FDS"

// EnvPolicyLog names the file the temporary policy-rc.d appends refused
// service actions to.
const EnvPolicyLog = "OVPKG_POLICY_LOG"

// RunOptions tunes Run.
type RunOptions struct {
	Root           string    // root the package manager works on ("/" or chrooted)
	Stdin          io.Reader // nil: os.Stdin
	Stdout, Stderr io.Writer
	Env            []string // extra environment
	// Init is the command that becomes the namespace's init, given
	// the package manager's argv after it. Default: this very binary
	// with InitArg.
	Init []string
	// PolicyRC places a policy-rc.d (exit 101 while ovpkg runs) in the
	// root's usr/sbin for the duration, unless one exists already.
	PolicyRC  bool
	PolicyLog string // where it logs refused actions (on tmpfs: RunDir)

	// StatusFD gives the package manager a pipe as file descriptor 3
	// (Job.StatusFD); its lines go to Parse as StreamStatus.
	StatusFD bool
	// Parse reads each line of output (stdout and stderr are also
	// passed through unchanged to Stdout and Stderr) and returns the
	// events it means; OnEvent receives them, one at a time.
	Parse   func(s Stream, line string) []Event
	OnEvent func(Event)
	// Gate, with GateDir, is called when the package manager reaches
	// the gate (GateHook) with what it handed over; nil lets it go on,
	// an error stops it there (RunResult.Vetoed) before it changes
	// anything. GateDir (on tmpfs: RunDir) holds the two FIFOs.
	Gate    func(input []string) error
	GateDir string
	// Writable, when not nil, keeps the base root read-only to the
	// package manager except these paths (the overlays, the card, the
	// archive directory...): see protectBase.
	Writable []string
}

// RunResult is what happened to the package manager.
type RunResult struct {
	Argv        []string
	Code        int       // exit code (128+signal when killed)
	Interrupted os.Signal // the signal that made ovpkg stop it, if any
	NoSpace     bool      // "No space left on device" seen in its output
	NotStarted  []string  // "service action" pairs policy-rc.d refused
	PolicyNote  string    // why no policy-rc.d was placed, if it was not
	Vetoed      error     // what Gate returned when it stopped the run
	Gated       bool      // the package manager reached the gate
	// ErrorLine is the first error the package manager printed ("E: ...",
	// "dpkg: error ..."), for the message.
	ErrorLine string
	// Collected are the lines opkg printed under "Collected errors:"
	// (it does so, and exits 0, when it kept a conffile the user changed
	// or a package left unconfigured by an earlier run failed again): the
	// caller judges them against the database.
	Collected []string
	// ReadOnly is the first line of output that reports a write refused
	// on the read-only base (RunOptions.Writable): a package or script
	// that writes outside the overlaid directories.
	ReadOnly string
}

// ShortArgv is argv for messages: without the -o options and status
// descriptors ovpkg adds.
func ShortArgv(argv []string) string {
	var out []string
	for i := 0; i < len(argv); i++ {
		switch a := argv[i]; {
		case a == "-o" || a == "--status-fd":
			i++
		case a == "-V":
		default:
			out = append(out, a)
		}
	}
	return strings.Join(out, " ")
}

// Err is nil on success, else a *RunError.
func (r *RunResult) Err() error {
	if r.Code == 0 && r.Interrupted == nil && r.Vetoed == nil {
		return nil
	}
	return &RunError{R: r}
}

// ErrInterrupted marks a run stopped by SIGINT/SIGTERM/SIGHUP.
var ErrInterrupted = errors.New("interrupted")

// RunError is a package-manager run that failed. errors.Is(err,
// unix.ENOSPC) holds when the card filled up; errors.Is(err,
// ErrInterrupted) when ovpkg was told to stop.
type RunError struct{ R *RunResult }

func (e *RunError) Error() string {
	s := ShortArgv(e.R.Argv)
	switch {
	case e.R.Vetoed != nil:
		return e.R.Vetoed.Error()
	case e.R.Interrupted != nil:
		return fmt.Sprintf("%s: stopped by %v", s, e.R.Interrupted)
	case e.R.NoSpace:
		return fmt.Sprintf("%s: the card is full (No space left on device)", s)
	}
	return fmt.Sprintf("%s: exit status %d", s, e.R.Code)
}

func (e *RunError) Unwrap() []error {
	var out []error
	if e.R.NoSpace {
		out = append(out, unix.ENOSPC)
	}
	if e.R.Interrupted != nil {
		out = append(out, ErrInterrupted)
	}
	if e.R.Vetoed != nil {
		out = append(out, e.R.Vetoed)
	}
	if e.R.ReadOnly != "" {
		out = append(out, ErrOutside)
	}
	return out
}

// policyMarker identifies a policy-rc.d that ovpkg placed.
const policyMarker = "# ovpkg-policy-rc.d"

// PolicyScript is the temporary policy-rc.d. Outside an ovpkg run (the
// log variable unset) it allows everything, so one left behind by a
// killed ovpkg is harmless; the next run removes it.
const PolicyScript = `#!/bin/sh
` + policyMarker + `: placed by ovpkg while it runs the package manager, so that
# maintainer scripts do not start services from the card (a running service
# would hold the card and block eject). ovpkg removes it afterwards.
[ -n "$` + EnvPolicyLog + `" ] || exit 0
case "$1" in --list|--quiet) [ "$1" = --list ] && exit 0; shift;; esac
echo "$*" >> "$` + EnvPolicyLog + `" 2>/dev/null
exit 101
`

// PolicyPath is where invoke-rc.d and deb-systemd-invoke look.
const PolicyPath = "usr/sbin/policy-rc.d"

// placePolicy writes the policy-rc.d under root unless a foreign one is
// there; it returns the undo and a note when it placed nothing.
func placePolicy(root string) (undo func(), note string) {
	p := filepath.Join(root, PolicyPath)
	if b, err := os.ReadFile(p); err == nil && !bytes.Contains(b, []byte(policyMarker)) {
		return func() {}, "the system's own " + "/" + PolicyPath + " decides which services start"
	}
	if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
		return func() {}, "no /usr/sbin: services started by maintainer scripts are not held back"
	}
	if err := os.WriteFile(p, []byte(PolicyScript), 0o755); err != nil {
		return func() {}, fmt.Sprintf("could not place %s (%v): services may start", p, err)
	}
	return func() { os.Remove(p) }, ""
}

// RemoveStalePolicy deletes a policy-rc.d a killed ovpkg left behind.
func RemoveStalePolicy(root string) {
	p := filepath.Join(root, PolicyPath)
	if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(policyMarker)) {
		os.Remove(p)
	}
}

// ParsePolicyLog reads the policy-rc.d log: "service action [runlevel]".
func ParsePolicyLog(r io.Reader) []string {
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		s := f[0] + " " + f[1]
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// noSpaceWatch passes output through and notes ENOSPC messages.
type noSpaceWatch struct {
	w    io.Writer
	mu   sync.Mutex
	tail []byte
	seen bool
}

var noSpaceText = []byte("No space left on device")

func (n *noSpaceWatch) Write(p []byte) (int, error) {
	n.mu.Lock()
	buf := append(n.tail, p...)
	if bytes.Contains(buf, noSpaceText) {
		n.seen = true
	}
	if len(buf) > len(noSpaceText) {
		buf = buf[len(buf)-len(noSpaceText):]
	}
	n.tail = append(n.tail[:0], buf...)
	n.mu.Unlock()
	if n.w == nil {
		return len(p), nil
	}
	return n.w.Write(p)
}

func (n *noSpaceWatch) Seen() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seen
}

// Run runs argv (the package manager) as the child of an init in a new
// PID namespace. The init dies with this process (Pdeathsig SIGKILL), and
// with it every process of the namespace: dpkg, which apt starts in a
// session of its own, and maintainer scripts included. SIGINT, SIGTERM
// and SIGHUP sent to ovpkg are passed on as SIGTERM to everything in the
// namespace; a second one kills it outright. Run returns when the package
// manager has exited; the result says how.
func Run(ctx context.Context, argv []string, o RunOptions) (*RunResult, error) {
	res := &RunResult{Argv: argv}
	if len(argv) == 0 {
		return nil, errors.New("run: empty command")
	}
	init := o.Init
	if init == nil {
		init = []string{"/proc/self/exe", InitArg}
	}
	env := append(os.Environ(), o.Env...)
	if o.Root != "" && o.Root != "/" {
		env = append(env, envInitRoot+"="+o.Root)
	}
	if o.PolicyRC {
		if o.PolicyLog == "" {
			return nil, errors.New("run: PolicyRC needs PolicyLog")
		}
		os.Remove(o.PolicyLog)
		undo, note := placePolicy(rootOr(o.Root))
		defer undo()
		res.PolicyNote = note
		env = append(env, EnvPolicyLog+"="+o.PolicyLog)
		defer func() {
			if b, err := os.ReadFile(o.PolicyLog); err == nil {
				res.NotStarted = ParsePolicyLog(bytes.NewReader(b))
			}
			os.Remove(o.PolicyLog)
		}()
	}
	ev := &events{parse: o.Parse, on: o.OnEvent, ro: &readOnlyWatch{}}
	watch := &noSpaceWatch{w: &lineTap{w: writerOr(o.Stdout, os.Stdout), s: StreamStdout, ev: ev}}
	watchErr := &noSpaceWatch{w: &lineTap{w: writerOr(o.Stderr, os.Stderr), s: StreamStderr, ev: ev}}
	cmd := exec.Command(init[0], append(append(init[1:len(init):len(init)], "--"), argv...)...)
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	var statusDone chan struct{}
	var statusW *os.File
	if o.StatusFD {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("status pipe: %w", err)
		}
		statusW = w
		closers = append(closers, r, w)
		cmd.ExtraFiles = []*os.File{w} // fd 3 of the init, passed on (envInitFDs)
		env = append(env, envInitFDs+"=4")
		statusDone = make(chan struct{})
		go func() {
			defer close(statusDone)
			ev.lines(r, StreamStatus)
		}()
	}
	var g *gate
	gateDone := make(chan struct{})
	var gated bool
	var vetoed error
	if o.Gate != nil {
		var err error
		if g, err = openGate(o.GateDir); err != nil {
			return nil, err
		}
		closers = append(closers, g)
		env = append(env, EnvGate+"="+g.dir)
		go func() {
			defer close(gateDone)
			g.serve(func(input []string) error {
				gated = true
				err := o.Gate(input)
				if err != nil && vetoed == nil {
					vetoed = err
				}
				return err
			})
		}()
	} else {
		close(gateDone)
	}
	cmd.Env = env
	cmd.Stdin = o.Stdin
	if cmd.Stdin == nil {
		cmd.Stdin = os.Stdin
	}
	// Pipes, not the terminal: apt then runs dpkg without a pty and
	// dpkg's errors reach the watch.
	cmd.Stdout, cmd.Stderr = watch, watchErr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	if o.Writable != nil {
		for _, w := range o.Writable {
			if strings.ContainsAny(w, "\n\x00") {
				return nil, fmt.Errorf("run: writable path %q", w)
			}
		}
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNS
		cmd.Env = append(cmd.Env, envWritable+"="+strings.Join(o.Writable, "\n"))
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child exits:
		// keep this goroutine on one thread until the child is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	var waitErr error
	count := 0
loop:
	for {
		select {
		case waitErr = <-done:
			break loop
		case s := <-sigs:
			count++
			if res.Interrupted == nil {
				res.Interrupted = s
			}
			if count == 1 {
				cmd.Process.Signal(syscall.SIGTERM)
			} else {
				cmd.Process.Kill()
			}
		case <-ctx.Done():
			cmd.Process.Kill()
			ctx = context.Background()
			if res.Interrupted == nil {
				res.Interrupted = syscall.SIGKILL
			}
		}
	}
	res.Code = exitCode(cmd.ProcessState, waitErr)
	res.NoSpace = watch.Seen() || watchErr.Seen()
	watch.w.(*lineTap).flush()
	watchErr.w.(*lineTap).flush()
	if statusDone != nil {
		// Every other holder of the write end was in the namespace,
		// which is gone now: the reader sees EOF once ours is closed.
		statusW.Close()
		<-statusDone
	}
	if g != nil {
		g.Close() // ends serve (the package manager is gone)
	}
	<-gateDone
	res.Gated, res.Vetoed = gated, vetoed
	ev.mu.Lock() // the last event has been delivered
	defer ev.mu.Unlock()
	res.ReadOnly, res.ErrorLine, res.Collected = ev.ro.line, ev.ro.errLine, ev.ro.collected
	return res, nil
}

func rootOr(r string) string {
	if r == "" {
		return "/"
	}
	return r
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return -1
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// InitMain is the init of the package manager's PID namespace: it starts
// args (after a leading "--") as its child, passes SIGINT/SIGTERM/SIGHUP
// on to every process of the namespace as SIGTERM, reaps orphans, and
// exits with the child's status as soon as the child exits (the kernel
// then kills whatever is left in the namespace). Returns the exit code.
func InitMain(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "ovpkg "+InitArg+": no command")
		return 2
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	attr := &syscall.SysProcAttr{}
	if root := os.Getenv(envInitRoot); root != "" {
		attr.Chroot = root
	}
	path := args[0]
	if !strings.Contains(path, "/") {
		p, err := lookPathIn(rootOr(os.Getenv(envInitRoot)), path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: not found (is the package manager installed?)\n", path)
			return 127
		}
		path = p
	}
	files := []uintptr{0, 1, 2}
	var env []string
	for _, e := range os.Environ() {
		k, v, _ := strings.Cut(e, "=")
		switch k {
		case envInitFDs:
			if n, err := strconv.Atoi(v); err == nil && n > 3 && n < 16 {
				for fd := 3; fd < n; fd++ {
					files = append(files, uintptr(fd))
				}
			}
			continue
		case envWritable:
			if _, err := protectBase(strings.Split(v, "\n")); err != nil {
				fmt.Fprintf(os.Stderr, "ovpkg: %v; not running the package manager\n", err)
				return ExitProtect
			}
			continue
		case envInitRoot:
			continue
		}
		env = append(env, e)
	}
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{Dir: "", Env: env, Files: files, Sys: attr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", args[0], err)
		return 127
	}
	exited := make(chan int, 1)
	go func() {
		for {
			var ws syscall.WaitStatus
			wpid, err := syscall.Wait4(-1, &ws, 0, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				exited <- 1
				return
			}
			if wpid == pid {
				if ws.Signaled() {
					exited <- 128 + int(ws.Signal())
				} else {
					exited <- ws.ExitStatus()
				}
				return
			}
		}
	}()
	for {
		select {
		case code := <-exited:
			return code
		case <-sigs:
			syscall.Kill(-1, syscall.SIGTERM) // everything in the namespace but us
		}
	}
}

// lookPathIn finds name in the usual PATH directories under root.
func lookPathIn(root, name string) (string, error) {
	for _, d := range strings.Split(os.Getenv("PATH")+":/usr/sbin:/usr/bin:/sbin:/bin", ":") {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func writerOr(w io.Writer, d io.Writer) io.Writer {
	if w == nil {
		return d
	}
	return w
}
