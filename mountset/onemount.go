package mountset

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/image"
	"github.com/ovpkg/ovpkg/loop"
)

// One card, one mount. The RUN_DIR lock serialises the commands of one
// RUN_DIR; a card image can also be named by another config, another
// RUN_DIR or another mount namespace. So ovmount also takes an exclusive
// flock on the image file itself (machine-wide: the lock is on the inode,
// whatever path or namespace reaches it) from its checks through attach
// and the card mount, and after attaching makes sure no other loop device
// backs the same file (loop devices are global), else it detaches its own
// and refuses. Once the card is mounted, its loop device is what the next
// ovmount finds.

// Errors callers test with errors.Is.
var (
	// ErrImageInUse: another ovmount is mounting the image right now,
	// or it is attached to a loop device already.
	ErrImageInUse = errors.New("the card image is in use")
	// ErrElsewhere: the record names a card mounted in another mount
	// namespace (one that shares RUN_DIR): nothing of it is touched here.
	ErrElsewhere = errors.New("the card is mounted in another mount namespace")
)

// imageLock is the open, flock'ed image file.
type imageLock struct {
	f        *os.File
	dev, ino uint64
}

// lockImage opens the image read-write and takes an exclusive flock on it
// without waiting; when another process holds it, it fails at once
// naming that process (from /proc/locks).
func lockImage(path string) (*imageLock, error) {
	// Opened and checked root-only on the descriptor that is locked,
	// inspected and attached (image.OpenOwned).
	f, err := image.OpenOwned(path)
	if err != nil {
		if errors.Is(err, image.ErrNotRootOnly) {
			return nil, err
		}
		if _, ierr := image.Inspect(path); ierr != nil {
			return nil, ierr // its message says what is wrong with the file
		}
		return nil, fmt.Errorf("opening the card image %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat of the card image %s: %w", path, err)
	}
	l := &imageLock{f: f, dev: uint64(st.Dev), ino: uint64(st.Ino)}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			// The lock belongs to the open file description, which the
			// loop device ovmount attached keeps: an attached image stays
			// locked, whoever attached it is long gone.
			if ds, err := loop.LookupID(l.dev, l.ino); err == nil && len(ds) > 0 {
				return nil, attachedError(path, ds)
			}
			who := "another process"
			if pid := flockHolder(l.dev, l.ino); pid > 0 {
				if cmd := procCommand(pid); cmd != "" {
					who = fmt.Sprintf("PID %d (%s)", pid, cmd)
				}
			}
			return nil, fmt.Errorf("%w: %s is mounting %s right now (in this or another mount namespace); one card is mounted once: wait for it, then eject it there if you want it here", ErrImageInUse, who, path)
		}
		return nil, fmt.Errorf("locking the card image %s: %w", path, err)
	}
	return l, nil
}

// waitImageLock is lockImage that waits for the lock (eject's short
// marking of the superblock).
func waitImageLock(path string) (*imageLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	return &imageLock{f: f, dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

func (l *imageLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// samePath checks that path still names the locked file (it was checked
// by path; it is attached by descriptor).
func (l *imageLock) samePath(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("the card image %s: %w", path, err)
	}
	if uint64(st.Dev) != l.dev || uint64(st.Ino) != l.ino {
		return fmt.Errorf("%w: %s was replaced by another file while ovmount checked it; nothing was mounted", ErrImageInUse, path)
	}
	return nil
}

// flockHolder finds, in /proc/locks, the PID holding a FLOCK on the file
// dev/ino (0 when unknown or not visible from this PID namespace).
func flockHolder(dev, ino uint64) int {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 1234 00:2b:5678 0 EOF
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[1] != "FLOCK" || fs[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fs[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

// ownMountNS is this process's mount namespace (inode of ns/mnt).
func ownMountNS() uint64 { return nsOf("/proc/self") }

func nsOf(procPID string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(procPID, "ns", "mnt"), &st); err != nil {
		return 0
	}
	return st.Ino
}

// attachedError refuses an image attached to the loop devices ds.
func attachedError(path string, ds []loop.Device) error {
	return fmt.Errorf("%w: %s is already attached: %s; one card is mounted once: eject it there first", ErrImageInUse, path, attachedElsewhere(ds))
}

// attachedElsewhere describes the loop devices ds (backing the card
// image) for a refusal: where each is mounted, in which mount namespace.
func attachedElsewhere(ds []loop.Device) string {
	var out []string
	for _, d := range ds {
		where := whereMounted(d)
		if where == "" {
			where = "mounted nowhere ovpkg can see (if nothing uses it: losetup -d " + d.Path + ")"
		}
		out = append(out, d.Path+", "+where)
	}
	return strings.Join(out, "; ")
}

// whereMounted finds the mounts of d's block device in every mount
// namespace (one mountinfo read per namespace), as "mounted on /overlay
// in the mount namespace of PID 123 (bash)".
func whereMounted(d loop.Device) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d.Path), "dev"))
	if err != nil {
		return ""
	}
	majmin := strings.TrimSpace(string(b))
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return ""
	}
	self := ownMountNS()
	seen := map[uint64]bool{}
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		ns := nsOf(dir)
		if ns == 0 || seen[ns] {
			continue
		}
		seen[ns] = true
		mi, err := os.ReadFile(filepath.Join(dir, "mountinfo"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(mi), "\n") {
			fs := strings.Fields(l)
			if len(fs) > 4 && fs[2] == majmin {
				where := "in this mount namespace"
				if ns != self {
					where = fmt.Sprintf("in the mount namespace of PID %d (%s)", pid, procComm(pid))
				}
				out = append(out, fmt.Sprintf("mounted on %s %s", fs[4], where))
				break
			}
		}
	}
	return strings.Join(out, ", ")
}

// pidInNS returns a live process in mount namespace ns (0 when none).
func pidInNS(ns uint64) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && nsOf(filepath.Join("/proc", e.Name())) == ns {
			return pid
		}
	}
	return 0
}

// loopStillBound reports whether r's loop device still backs r's image
// (by st_dev/st_ino: the record's, or the image path's for records
// written before they were kept).
func (r *Record) loopStillBound() bool {
	d, err := loop.Status(r.Loop)
	if err != nil {
		return false
	}
	dev, ino := r.ImageDev, r.ImageIno
	if dev == 0 && ino == 0 {
		var st unix.Stat_t
		if unix.Stat(r.Image, &st) != nil {
			return false
		}
		dev, ino = uint64(st.Dev), uint64(st.Ino)
	}
	return d.Dev == dev && d.Ino == ino
}

// elsewhere is called when nothing r names is mounted in this namespace.
// It returns an ErrElsewhere error when r's loop device still backs r's
// image: the card is mounted in another mount namespace that shares
// RUN_DIR (or something holds the device), and neither the record nor
// anything of that mount may be touched from here. nil means the record
// is stale.
func (r *Record) elsewhere(runDir string) error {
	if !r.loopStillBound() {
		return nil
	}
	where := whereMounted(loop.Device{Path: r.Loop})
	hint := ""
	if r.MountNS != 0 && r.MountNS != ownMountNS() {
		if pid := pidInNS(r.MountNS); pid > 0 {
			hint = fmt.Sprintf(" (for example: nsenter -m -t %d ovpkg eject)", pid)
		}
	}
	if where == "" {
		where = "not mounted anywhere ovpkg can see, but still attached"
	}
	return fmt.Errorf("%w: %s on %s is %s; the record %s is theirs: eject it there%s; nothing was changed here",
		ErrElsewhere, r.Image, r.Loop, where, recordPath(runDir), hint)
}

// procComm is a process's short name (comm), "?" when it is gone.
func procComm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
