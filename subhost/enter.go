package subhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// enterNS are the namespaces Enter joins, in the order it joins them
// (the mount namespace last). The time namespace is not joined: the
// kernel lets only a single-threaded process do that (EUSERS), and a
// subhost's time namespace has zero offsets, so its clocks are the
// host's.
var enterNS = []struct {
	name string
	flag int
}{{"cgroup", unix.CLONE_NEWCGROUP}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"net", unix.CLONE_NEWNET},
	{"pid", unix.CLONE_NEWPID}, {"mnt", unix.CLONE_NEWNS}}

// Running returns the record of a running subhost (ErrNotRunning if it
// is not).
func Running(runDir, name string) (*State, error) {
	st, err := ReadState(runDir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("subhost %s %w", name, ErrNotRunning)
	}
	if err != nil {
		return nil, err
	}
	if !alive(runDir, name) || st.State != StateRunning || !sameInit(st) {
		return nil, fmt.Errorf("subhost %s %w (%s)", name, ErrNotRunning, displayState(runDir, st))
	}
	return st, nil
}

// Enter runs argv inside running subhost name (all its namespaces, its
// cgroup, its root) with the caller's stdio, and returns its exit code.
// argv empty runs a login shell.
func Enter(runDir, name string, argv []string, env []string) (int, error) {
	st, err := Running(runDir, name)
	if err != nil {
		return 0, err
	}
	// Open everything first: after joining the mount namespace the
	// host's /proc is out of reach.
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, ns := range enterNS {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", st.Init, ns.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, fmt.Errorf("subhost %s: opening its %s namespace: %w", name, ns.name, err)
		}
		fds = append(fds, fd)
	}
	cg := -1
	if st.Cgroup != "" {
		if fd, err := unix.Open(st.Cgroup, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			cg = fd
			fds = append(fds, fd)
		}
	}
	if !sameInit(st) {
		return 0, fmt.Errorf("subhost %s %w", name, ErrNotRunning)
	}
	if len(argv) == 0 {
		argv = []string{"/bin/sh", "-l"}
	}
	// Namespaces are joined by one OS thread that first stops sharing
	// its filesystem attributes with the other threads (setns of a
	// mount namespace needs that); the command is forked from it, and
	// the thread is never reused (the goroutine ends locked).
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			res <- result{0, fmt.Errorf("unshare(CLONE_FS): %w", err)}
			return
		}
		for i, ns := range enterNS {
			if err := unix.Setns(fds[i], ns.flag); err != nil {
				res <- result{0, fmt.Errorf("subhost %s: joining its %s namespace: %w", name, ns.name, err)}
				return
			}
		}
		path := argv[0]
		if p, ok := lookPath(path); ok && path == argv[0] && !containsSlash(path) {
			path = p
		}
		cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Dir: "/", Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
			SysProcAttr: &syscall.SysProcAttr{UseCgroupFD: cg >= 0, CgroupFD: cg}}
		if err := cmd.Start(); err != nil {
			res <- result{127, fmt.Errorf("subhost %s: %s: %w", name, argv[0], err)}
			return
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				res <- result{128 + int(ws.Signal()), nil}
				return
			}
			res <- result{ee.ExitCode(), nil}
			return
		}
		res <- result{0, err}
	}()
	r := <-res
	return r.code, r.err
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}
