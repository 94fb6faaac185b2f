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
	if addr := os.Getenv("NOTIFY_SOCKET"); addr != "" {
		sendTo(addr, msg)
	}
}

// sendTo sends one datagram to the unix socket addr.
func sendTo(addr, msg string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, []byte(msg), 0, &unix.SockaddrUnix{Name: addr})
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
	// The reader ends before fd is closed (shutdown wakes its recvfrom):
	// a reader left behind would read from whatever socket gets fd's
	// number next.
	done, readerDone := make(chan struct{}), make(chan struct{})
	defer func() {
		close(done)
		unix.Shutdown(fd, unix.SHUT_RDWR)
		<-readerDone
	}()
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			select {
			case <-done:
				return
			default:
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				close(msgs)
				return
			}
			select {
			case msgs <- string(buf[:n]):
			case <-done:
				return
			}
		}
	}()
	status := ""
	ended := func(err error) (int, error) {
		if status == "" {
			status = fmt.Sprintf("the supervisor ended (%v); see %s", err, logPath)
		}
		return 0, errors.New(status)
	}
	// What the supervisor sent before it exited is queued on the socket
	// but may not have been read yet: once it has exited, a last
	// datagram of our own marks the end of its messages.
	var endMark string
	var waitErr error
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				if endMark != "" {
					return ended(waitErr)
				}
				continue
			}
			if endMark != "" && m == endMark {
				return ended(waitErr)
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
		case waitErr = <-exited:
			exited = nil
			endMark = "OVPKG_DETACH_END=" + hex.EncodeToString(rnd[:])
			if msgs == nil || sendTo(addr, endMark) != nil {
				return ended(waitErr)
			}
		case <-deadline:
			return cmd.Process.Pid, fmt.Errorf("the subhost is not up after %v; it goes on starting in the background (see %s)", timeout, logPath)
		}
	}
}
