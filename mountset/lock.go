package mountset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/trustpath"
)

// held is this process's lock, shared by nested Lock calls (ovpkg install
// takes the lock, then calls Up, which takes it again).
var (
	heldMu sync.Mutex
	held   = map[string]*heldLock{}
)

type heldLock struct {
	f     *os.File
	count int
}

// LockError says who holds the lock.
type LockError struct {
	Path   string
	PID    int
	Holder string // "PID 123 (ovpkg install vim)" or "" when unknown
}

func (e *LockError) Error() string {
	h := e.Holder
	if h == "" {
		h = "another process"
	}
	return fmt.Sprintf("%s: %s holds %s; wait for it to finish", ErrLocked, h, e.Path)
}

func (e *LockError) Unwrap() error { return ErrLocked }

// Lock takes the exclusive lock on RUN_DIR/lock for the options' config,
// without waiting: when another process holds it, it fails at once with a
// *LockError naming that process. Nested calls in one process share the
// lock; each unlock releases one.
func Lock(opt Options) (unlock func(), err error) {
	runDir, err := RunDir(opt)
	if err != nil {
		return nil, err
	}
	return lockDir(runDir)
}

// holderSize is the fixed size of the "PID command" line the lock holder
// writes at the start of the lock file: written in place, padded with
// spaces, so the file is never truncated.
const holderSize = 256

// lockDir takes the lock in the checked RUN_DIR runDir. The lock file is
// opened with O_NOFOLLOW and O_CLOEXEC (a planted symbolic link is
// refused, not followed), must be a root-owned regular file with one
// link, and is never truncated: the holder's line is written in place.
func lockDir(runDir string) (func(), error) {
	dir, err := checkRunDir(runDir, true)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockName)
	heldMu.Lock()
	defer heldMu.Unlock()
	if h, ok := held[path]; ok {
		h.count++
		return unlocker(path), nil
	}
	f, err := trustpath.OpenIn(dir, LockName, unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lock %s: %w", filepath.Join(runDir, LockName), err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			le := &LockError{Path: filepath.Join(runDir, LockName)}
			b := make([]byte, holderSize)
			n, _ := f.ReadAt(b, 0)
			line, _, _ := strings.Cut(string(b[:n]), "\n")
			pidS, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
			if pid, err := strconv.Atoi(pidS); err == nil && pid > 0 {
				le.PID = pid
				if live := procCommand(pid); live != "" {
					cmd = live
				}
				le.Holder = fmt.Sprintf("PID %d (%s)", pid, cmd)
			}
			return nil, le
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// Say who holds it: "PID command line", in place.
	line := fmt.Sprintf("%d %s", os.Getpid(), ownCommand())
	if len(line) > holderSize-1 {
		line = line[:holderSize-1]
	}
	f.WriteAt([]byte(line+strings.Repeat(" ", holderSize-1-len(line))+"\n"), 0)
	held[path] = &heldLock{f: f, count: 1}
	return unlocker(path), nil
}

func unlocker(path string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			heldMu.Lock()
			defer heldMu.Unlock()
			h, ok := held[path]
			if !ok {
				return
			}
			h.count--
			if h.count == 0 {
				h.f.Close() // releases the flock
				delete(held, path)
			}
		})
	}
}

func ownCommand() string {
	args := append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...)
	s := strings.Join(args, " ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// procCommand reads a process's command line, "" when it is gone.
func procCommand(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return ""
	}
	parts := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	parts[0] = filepath.Base(parts[0])
	s := strings.Join(parts, " ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
