package subhost

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Notify sends a systemd-style notification (READY=1, STATUS=...) to
// $NOTIFY_SOCKET, when set. Errors are ignored, as sd_notify's are.
func Notify(msg string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	unix.Sendto(fd, []byte(msg), 0, &unix.SockaddrUnix{Name: addr})
}

// Detach runs argv (the same program, with --foreground) as a supervisor
// in its own session, its output into logPath, and waits until it says
// READY=1 (returns nil) or ends (returns what it said in STATUS=). This
// is overlay-boot's "backgrounds itself and exits 0 at once", except that
// it returns only once the subhost is up, or says why it is not.
func Detach(exe string, argv []string, logPath string, timeout time.Duration) (pid int, err error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var rnd [8]byte
	rand.Read(rnd[:])
	addr := "@ovpkg-subhost-" + hex.EncodeToString(rnd[:])
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		return 0, fmt.Errorf("notification socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return 0, fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "NOTIFY_SOCKET=") {
			env = append(env, e)
		}
	}
	cmd := &exec.Cmd{Path: exe, Args: argv, Env: append(env, "NOTIFY_SOCKET="+addr), Stdout: logf, Stderr: logf, Dir: "/",
		SysProcAttr: &syscall.SysProcAttr{Setsid: true}}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	msgs := make(chan string, 8)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	status := ""
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			for _, l := range strings.Split(m, "\n") {
				switch {
				case l == "READY=1":
					pid := cmd.Process.Pid
					cmd.Process.Release()
					return pid, nil
				case strings.HasPrefix(l, "STATUS="):
					status = strings.TrimPrefix(l, "STATUS=")
				}
			}
		case err := <-exited:
			if status == "" {
				status = fmt.Sprintf("the supervisor ended (%v); see %s", err, logPath)
			}
			return 0, errors.New(status)
		case <-deadline:
			return cmd.Process.Pid, fmt.Errorf("the subhost is not up after %v; it goes on starting in the background (see %s)", timeout, logPath)
		}
	}
}
