package subhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Card is the card's merged root a subhost's lower is made of (--card,
// try): the root the card overlays and, per overlaid directory, the
// card's layers.
type Card struct {
	Root string
	Dirs []CardDir
}

// StartOptions tune Supervise.
type StartOptions struct {
	RunDir string
	Card   *Card     // nil: LOWER as the config says
	Out    io.Writer // progress for the user (foreground: stderr)
	Exe    string    // the program run as PID 1; "" = /proc/self/exe
	// Ready, if set, is called once the subhost is up (the state is
	// written), e.g. to tell a waiting starter or systemd.
	Ready func(st *State)
}

// initFlags are the namespaces a subhost gets besides its network
// namespace: mount, PID, IPC, UTS, time and cgroup.
const initFlags = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS |
	unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// Supervise starts the subhost cfg and stays with it until it ends: it is
// the process `start --foreground` (and systemd) runs. It returns once
// the subhost has ended and everything it made on the host is removed.
func Supervise(cfg *Config, opt StartOptions) (retErr error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	lk, err := tryLock(opt.RunDir, cfg.Name)
	if errors.Is(err, ErrRunning) {
		if st, _ := ReadState(opt.RunDir, cfg.Name); st != nil {
			return fmt.Errorf("subhost %s is already running (supervisor pid %d, config %s)", cfg.Name, st.Supervisor, st.Config)
		}
		return fmt.Errorf("subhost %s is already running", cfg.Name)
	}
	if err != nil {
		return err
	}
	defer lk.release()
	if old, err := ReadState(opt.RunDir, cfg.Name); err == nil && needsCleanup(old) {
		fmt.Fprintf(opt.Out, "subhost %s: removing what its last run left (%s)\n", cfg.Name, old.State)
		if err := cleanup(old); err != nil {
			return fmt.Errorf("subhost %s: cleaning up its last run: %w", cfg.Name, err)
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	st := &State{Name: cfg.Name, Config: cfg.Path, State: StateStarting, Supervisor: os.Getpid(),
		Lower: cfg.Lower, Upper: cfg.Upper, Work: cfg.Work, Live: cfg.Live, Log: cfg.Log, Card: opt.Card != nil, Started: time.Now().UTC()}
	if opt.Card != nil {
		st.Lower = opt.Card.Root
	}
	if err := writeState(opt.RunDir, st); err != nil {
		return err
	}
	// Undo newest first, every failure joined; the record keeps what is
	// left when even that fails.
	var undo []func() error
	defer func() {
		if retErr == nil {
			return
		}
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](); err != nil {
				errs = append(errs, err)
			}
		}
		st.State, st.Ended, st.Reason = StateFailed, time.Now().UTC(), retErr.Error()
		if len(errs) > 0 {
			st.State = StateCrashed
			retErr = fmt.Errorf("%w; undoing the start failed too: %v", retErr, errors.Join(errs...))
		}
		writeState(opt.RunDir, st)
	}()

	logf, err := os.OpenFile(cfg.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	logLine := func(format string, a ...any) {
		fmt.Fprintf(logf, "%s %s: %s\n", time.Now().Format(time.RFC3339), cfg.Name, fmt.Sprintf(format, a...))
	}

	limits := Limits{Memory: cfg.Memory, CPU: cfg.CPU, Pids: cfg.Pids}
	cgFD := -1
	if root, err := cgroup2Root("/proc/self/mountinfo"); err == nil {
		dir, err := makeCgroup(root, cfg.Name, limits)
		if err != nil {
			return err
		}
		st.Cgroup = dir
		undo = append(undo, func() error { return removeCgroup(dir) })
		fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		defer unix.Close(fd)
		cgFD = fd
	} else if len(limits.controllers()) > 0 {
		return fmt.Errorf("MEMORY, CPU and PIDS need cgroup v2: %w", err)
	}

	spec := initSpec{Name: cfg.Name, Lower: cfg.Lower, Upper: cfg.Upper, Work: cfg.Work, Live: cfg.Live,
		RAMSize: cfg.RAMSize, Shares: cfg.Shares, Start: cfg.Start, Premount: cfg.Premount, Postmount: cfg.Postmount,
		Init: cfg.Init, Stop: cfg.Stop, HookEnv: hookEnv(cfg, ActionStart)}
	if opt.Card != nil {
		spec.Lower = opt.Card.Root
		spec.BaseRoot = opt.Card.Root
		spec.BaseView = filepath.Join(Dir(opt.RunDir), cfg.Name+".base")
		st.BaseView = spec.BaseView
		for _, d := range opt.Card.Dirs {
			d.Lowers = append(slices.Clone(d.Lowers), filepath.Join(spec.BaseView, d.Dir))
			spec.CardDirs = append(spec.CardDirs, d)
		}
		if err := os.Mkdir(spec.BaseView, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		undo = append(undo, func() error { return removeDir(spec.BaseView) })
	}

	specR, specW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer specW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return err
	}
	defer statusR.Close()
	exe := opt.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	cmd := &exec.Cmd{Path: exe, Args: []string{InitArg0, cfg.Name}, Stdout: logf, Stderr: logf,
		Env:        []string{"PATH=" + servicePath},
		ExtraFiles: []*os.File{specR, statusW},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: initFlags, Pdeathsig: syscall.SIGKILL,
			UseCgroupFD: cgFD >= 0, CgroupFD: cgFD}}
	if err := cmd.Start(); err != nil {
		specR.Close()
		statusW.Close()
		return fmt.Errorf("starting the subhost's PID 1: %w", err)
	}
	specR.Close()
	statusW.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	st.Init = cmd.Process.Pid
	undo = append(undo, func() error {
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		return nil
	})
	if err := writeState(opt.RunDir, st); err != nil {
		return err
	}
	ns, err := nameNetns(cfg.Name, st.Init)
	if err != nil {
		return err
	}
	st.NetNS = ns
	undo = append(undo, func() error { return removeNetns(ns) })
	if err := writeState(opt.RunDir, st); err != nil {
		return err
	}
	undo = append(undo, func() error { return removeCables(st.Cables) })
	cerr := makeCables(cfg, ns, &st.Cables)
	if err := writeState(opt.RunDir, st); err != nil {
		return errors.Join(cerr, err)
	}
	if cerr != nil {
		return cerr
	}
	if err := json.NewEncoder(specW).Encode(&spec); err != nil {
		return fmt.Errorf("starting the subhost's PID 1: %w", err)
	}
	specW.Close()

	statusLines := make(chan string, 16)
	lines := statusLines
	go func() {
		readStatus(statusR, func(l string) { statusLines <- l })
		close(statusLines)
	}()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	defer signal.Stop(sigs)

	reason, ready, stopping := "", false, false
	var waitErr error
	done := false
	for !done {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			switch {
			case l == msgReady:
				ready = true
				st.State, st.Ready = StateRunning, time.Now().UTC()
				if err := writeState(opt.RunDir, st); err != nil {
					logLine("warning: %v", err)
				}
				logLine("started (PID 1 is %d on the host)", st.Init)
				if opt.Ready != nil {
					opt.Ready(st)
				}
			case strings.HasPrefix(l, msgError):
				reason = strings.TrimPrefix(l, msgError)
				logLine("start failed: %s", reason)
			case strings.HasPrefix(l, msgEnded):
				reason = strings.TrimPrefix(l, msgEnded)
			case strings.HasPrefix(l, msgNote):
				logLine("%s", strings.TrimPrefix(l, msgNote))
				fmt.Fprintf(opt.Out, "subhost %s: %s\n", cfg.Name, strings.TrimPrefix(l, msgNote))
			}
		case s := <-sigs:
			if !stopping {
				stopping = true
				logLine("stopping (%v)", s)
				st.State = StateStopping
				writeState(opt.RunDir, st)
				cmd.Process.Signal(syscall.SIGTERM)
			}
		case waitErr = <-exited:
			exited <- waitErr // for the undo list
			done = true
		}
	}
	// PID 1 has exited: take what it still said.
	for l := range statusLines {
		if strings.HasPrefix(l, msgEnded) || strings.HasPrefix(l, msgError) {
			reason = l[strings.IndexByte(l, ' ')+1:]
		}
	}
	if !ready {
		if reason == "" {
			reason = fmt.Sprintf("PID 1 ended before the subhost was ready: %v (see %s)", waitErr, cfg.Log)
		}
		return fmt.Errorf("subhost %s: %s", cfg.Name, reason)
	}
	if reason == "" {
		reason = fmt.Sprintf("PID 1 ended unexpectedly: %v", waitErr)
	}
	if cfg.Memory > 0 {
		reason += oomNote(st.Cgroup, cfg.Memory)
	}
	undo = nil
	st.Reason = reason
	err = cleanup(st)
	if err != nil {
		st.State = StateCrashed
		st.Reason += "; cleaning up: " + err.Error()
	} else {
		st.State = StateStopped
	}
	st.Ended = time.Now().UTC()
	if len(cfg.Helpers) > 0 {
		if _, herr := LoadConfig(cfg.Path, Options{Action: ActionStop, Stderr: logf}); herr != nil {
			logLine("stop helpers: %v", herr)
			err = errors.Join(err, herr)
		}
	}
	logLine("ended: %s", st.Reason)
	if werr := writeState(opt.RunDir, st); werr != nil {
		err = errors.Join(err, werr)
	}
	return err
}

// hookEnv is the environment of PREMOUNT and POSTMOUNT.
func hookEnv(cfg *Config, action string) []string {
	return []string{"ACTION=" + action, "CONFIG=" + cfg.Path, "NAME=" + cfg.Name, "BASE=" + cfg.Base,
		"LOWER=" + cfg.Lower, "UPPER=" + cfg.Upper, "WORK=" + cfg.Work, "LIVE=" + cfg.Live}
}

// needsCleanup says whether a record may have things left on the host.
func needsCleanup(st *State) bool {
	return st.State != StateStopped && st.State != StateFailed
}

// cleanup removes everything st records on the host: the subhost's
// processes (its cgroup), the host ends of its cables, its network
// namespace name, its base view directory. Safe to repeat.
func cleanup(st *State) error {
	var errs []error
	if st.Init > 0 && st.Cgroup == "" {
		// Without a cgroup only PID 1 can be named; its namespace dies with it.
		if sameInit(st) {
			unix.Kill(st.Init, unix.SIGKILL)
		}
	}
	if err := removeCgroup(st.Cgroup); err != nil {
		errs = append(errs, err)
	}
	if err := removeCables(st.Cables); err != nil {
		errs = append(errs, err)
	}
	if err := removeNetns(st.NetNS); err != nil {
		errs = append(errs, err)
	}
	if err := removeDir(st.BaseView); st.BaseView != "" && err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sameInit checks that st.Init is still the subhost's PID 1 (its own
// PID 1 in its namespace), not a reused PID.
func sameInit(st *State) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.Init))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "NSpid:" {
			return f[len(f)-1] == "1"
		}
	}
	return false
}

// removeDir removes an empty directory of ours (never recursively: it
// may be a mount point); missing is fine.
func removeDir(p string) error {
	if err := unix.Rmdir(p); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	return nil
}
