package subhost

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"
)

// StopOptions tune Stop.
type StopOptions struct {
	RunDir string
	// Timeout is how long to wait for the supervisor after SIGTERM
	// before the subhost's processes are killed; 0 = its STOP_TIMEOUT
	// twice over plus 5 s.
	Timeout time.Duration
	Out     io.Writer
}

// ErrNotRunning is returned by Stop and Enter for a subhost that is not
// running.
var ErrNotRunning = errors.New("is not running")

// Stop stops subhost name: SIGTERM to its supervisor (which has PID 1
// stop the services in reverse order, then end every process), and waits
// for it; when the supervisor is gone (crashed, killed) or does not end
// in time, Stop removes what the record says is left. It returns the
// record as it ends.
func Stop(name string, opt StopOptions) (*State, error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	st, err := ReadState(opt.RunDir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("subhost %s %w (no record in %s)", name, ErrNotRunning, Dir(opt.RunDir))
	}
	if err != nil {
		return nil, err
	}
	lk, err := tryLock(opt.RunDir, name)
	if errors.Is(err, ErrRunning) {
		timeout := opt.Timeout
		if timeout == 0 {
			timeout = 2*DefaultStopTimeout + 5*time.Second
			if cfg, cerr := LoadConfig(st.Config, Options{}); cerr == nil {
				timeout = 2*cfg.Stop + 5*time.Second
			}
		}
		if err := unix.Kill(st.Supervisor, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
			return st, fmt.Errorf("signalling subhost %s's supervisor (pid %d): %w", name, st.Supervisor, err)
		}
		lk, err = waitUnlocked(opt.RunDir, name, st.Supervisor, timeout)
		if errors.Is(err, ErrRunning) {
			fmt.Fprintf(opt.Out, "subhost %s: its supervisor did not end within %v; killing the subhost\n", name, timeout)
			// Killing the cgroup (or PID 1) ends PID 1, and the
			// supervisor then cleans up and exits.
			if st.Cgroup != "" {
				removeCgroup(st.Cgroup)
			} else if sameInit(st) {
				unix.Kill(st.Init, unix.SIGKILL)
			}
			lk, err = waitUnlocked(opt.RunDir, name, st.Supervisor, 10*time.Second)
			if errors.Is(err, ErrRunning) {
				unix.Kill(st.Supervisor, unix.SIGKILL)
				lk, err = waitUnlocked(opt.RunDir, name, st.Supervisor, 10*time.Second)
			}
		}
	}
	if err != nil {
		return st, err
	}
	defer lk.release()
	if st, err = ReadState(opt.RunDir, name); err != nil {
		return st, err
	}
	if !needsCleanup(st) {
		return st, nil
	}
	fmt.Fprintf(opt.Out, "subhost %s: its supervisor is gone (%s); removing what it left\n", name, st.State)
	if err := cleanup(st); err != nil {
		return st, fmt.Errorf("subhost %s: %w", name, err)
	}
	if st.Reason == "" {
		st.Reason = "the supervisor died; cleaned up by ovpkg subhost stop"
	} else {
		st.Reason += "; cleaned up by ovpkg subhost stop"
	}
	st.State, st.Ended = StateStopped, time.Now().UTC()
	if cfg, err := LoadConfig(st.Config, Options{}); err == nil && len(cfg.Helpers) > 0 {
		if _, err := LoadConfig(st.Config, Options{Action: ActionStop, Stderr: opt.Out}); err != nil {
			fmt.Fprintf(opt.Out, "subhost %s: stop helpers: %v\n", name, err)
		}
	}
	return st, writeState(opt.RunDir, st)
}

// waitUnlocked waits up to d for the supervisor (pid) to exit and
// returns its lock. It polls the supervisor's pidfd, so it wakes at once.
func waitUnlocked(runDir, name string, pid int, d time.Duration) (*lock, error) {
	deadline := time.Now().Add(d)
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		defer unix.Close(fd)
		for {
			if l, err := tryLock(runDir, name); !errors.Is(err, ErrRunning) {
				return l, err
			}
			left := time.Until(deadline)
			if left <= 0 {
				return nil, fmt.Errorf("subhost %s %w", name, ErrRunning)
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, int(min(left, time.Second)/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
				break
			}
		}
	}
	delay := 5 * time.Millisecond
	for {
		l, err := tryLock(runDir, name)
		if !errors.Is(err, ErrRunning) || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(delay)
		delay = min(delay*2, 100*time.Millisecond)
	}
}
