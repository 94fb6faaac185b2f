package txn

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/overlay"
)

func openLayout(cardMount string) (*card.Layout, error) { return card.Open(cardMount) }

// privateNS is a mount namespace of one OS thread of this process: the
// thread called unshare(CLONE_NEWNS) while locked and is never unlocked,
// so the namespace dies with it. In it the overlays on the card's targets
// are lazily detached, which shows the base root's own directories;
// nobody else sees any of it. Other goroutines reach its view through
// Path (/proc/self/task/<tid>/root/...); mounts inside it must be made by
// Do, which runs a function on the thread itself.
type privateNS struct {
	prefix string
	nsfd   int // the namespace, for Join
	rootfd int // the thread's root directory there (a chroot's), for Join
	calls  chan func()
	quit   chan struct{}
}

func newPrivateNS(targets []string) (*privateNS, error) {
	p := &privateNS{calls: make(chan func()), quit: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread must keep the process's namespace (it is
			// what /proc/self shows, and it never exits): hand over to a
			// goroutine, which cannot run on this locked thread.
			done := make(chan struct{})
			go func() { p.run(targets, ready); close(done) }()
			<-done
			runtime.UnlockOSThread()
			return
		}
		p.run(targets, ready)
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return p, nil
}

// run is the namespace's thread.
func (p *privateNS) run(targets []string, ready chan<- error) {
	{
		runtime.LockOSThread()
		// no UnlockOSThread: the thread, and its namespace, end with it
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			ready <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			ready <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		ts := append([]string{}, targets...)
		sort.Slice(ts, func(i, j int) bool { return len(ts[i]) > len(ts[j]) })
		for _, t := range ts {
			for i := 0; i < 8; i++ {
				tab, err := mount.LoadTable("/proc/thread-self/mountinfo")
				if err != nil {
					ready <- err
					return
				}
				m := tab.Lookup(filepath.Clean(t))
				if m == nil || m.FSType != overlay.FSType {
					break
				}
				if err := unix.Unmount(t, unix.MNT_DETACH); err != nil {
					ready <- fmt.Errorf("detaching the overlay on %s in a private namespace: %w", t, err)
					return
				}
			}
		}
		p.prefix = "/proc/" + strconv.Itoa(os.Getpid()) + "/task/" + strconv.Itoa(unix.Gettid()) + "/root"
		fd, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ready <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		p.nsfd = fd
		// setns(CLONE_NEWNS) resets a joining thread's root to the
		// namespace's: keep ours (inside a chroot it is not "/") so
		// that Join can return to it.
		rfd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			unix.Close(fd)
			ready <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		p.rootfd = rfd
		ready <- nil
		for {
			select {
			case f := <-p.calls:
				f()
			case <-p.quit:
				return
			}
		}
	}
}

// Path is abs as seen in the private namespace, usable from any thread.
func (p *privateNS) Path(abs string) string { return p.prefix + filepath.Clean("/"+abs) }

// Do runs fn on the namespace's own thread (for mount and umount).
func (p *privateNS) Do(fn func() error) error {
	done := make(chan error, 1)
	p.calls <- func() { done <- fn() }
	return <-done
}

// Join moves the calling OS thread into the namespace. The caller must
// have locked its goroutine to the thread and must never unlock it (the
// thread then ends with the goroutine).
func (p *privateNS) Join() error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("joining the private mount namespace: %w", err)
	}
	if err := unix.Setns(p.nsfd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("joining the private mount namespace: %w", err)
	}
	// Back into the root ovpkg runs in (a chroot's: the test roots, a
	// build system's), which setns replaced by the namespace's own.
	if err := unix.Fchdir(p.rootfd); err != nil {
		return fmt.Errorf("joining the private mount namespace: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("joining the private mount namespace: chroot: %w", err)
	}
	return unix.Chdir("/")
}

// Close ends the thread; the kernel tears down what is still mounted in
// the namespace.
func (p *privateNS) Close() {
	unix.Close(p.nsfd)
	unix.Close(p.rootfd)
	close(p.quit)
}

// WithBase runs fn with base(abs) naming abs as the base root shows it
// (the overlays on the card's targets out of the way). When the record
// names a separate base (init-overlay's /overlay/robase), that is read
// directly.
func (c *Card) WithBase(fn func(base func(abs string) string) error) error {
	if c.Rec.Base != "" {
		return fn(func(abs string) string {
			rel, err := filepath.Rel(c.Rec.Root, filepath.Clean("/"+abs))
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				return abs
			}
			return filepath.Join(c.Rec.Base, rel)
		})
	}
	if c.baseNS != nil {
		return fn(c.baseNS.Path)
	}
	ns, err := newPrivateNS(c.targets())
	if err != nil {
		return err
	}
	defer ns.Close()
	return fn(ns.Path)
}

// targets returns the overlaid directories of the record.
func (c *Card) targets() []string {
	var ts []string
	for _, d := range c.Rec.Dirs {
		ts = append(ts, filepath.Join(c.Rec.Root, d))
	}
	return ts
}
