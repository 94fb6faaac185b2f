package loop

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// ControlPath is the loop control device (LOOP_CTL_GET_FREE).
	ControlPath = "/dev/loop-control"
	// Major is the block major number of loop devices.
	Major = 7
	// MaxAttachTries bounds the retries on the free-device race: another
	// process may bind the device LOOP_CTL_GET_FREE returned before we do.
	MaxAttachTries = 20
	// setStatusTries bounds retries of LOOP_SET_STATUS64 on EAGAIN (the
	// kernel returns it while the device's page cache is being dropped).
	setStatusTries = 20
)

var (
	// sysBlock is where sysfs lists block devices.
	sysBlock = "/sys/block"
	// devDir holds the device nodes.
	devDir = "/dev"
	// forceLegacy makes Attach skip LOOP_CONFIGURE and use LOOP_SET_FD +
	// LOOP_SET_STATUS64, as on kernels before 5.8 (tests set it).
	forceLegacy atomic.Bool
	// counters for tests: how devices were bound, and free-device races lost
	boundByConfigure, boundBySetFD, busyRetries, maxRetries atomic.Int64
	// statusHook, when set (tests), edits what LOOP_SET_STATUS64 is given
	// on the fallback path, to make it fail after LOOP_SET_FD succeeded.
	statusHook func(*unix.LoopInfo64)
)

// ErrNotApplied means the kernel accepted the ioctls but reports settings
// other than those asked for (offset, size limit, flags, size); the device
// was detached again.
var ErrNotApplied = errors.New("kernel did not apply the requested loop settings")

// ErrStillAttached means WaitDetached timed out: the device still has the
// backing file (something still holds it open or mounted).
var ErrStillAttached = errors.New("loop device still attached")

// Options say how to attach a backing file.
type Options struct {
	Offset    int64 // bytes into the backing file
	SizeLimit int64 // bytes; 0 = to the end
	ReadOnly  bool
	Autoclear bool // LO_FLAGS_AUTOCLEAR: detached by the kernel when the last user closes it
	// DirectIO asks for LO_FLAGS_DIRECT_IO: the device reads and writes
	// the backing file with O_DIRECT, so the card's data is not cached
	// twice (once for the filesystem on the device, once for the image
	// file). Best effort: the kernel leaves it off when the backing file
	// cannot do direct I/O at this offset; Device.DirectIO says what it did.
	DirectIO bool
}

// Device is a bound loop device.
type Device struct {
	Path    string `json:"path"`    // /dev/loopN
	Index   int    `json:"index"`   // N
	Backing string `json:"backing"` // backing file path as the kernel reports it
	// Dev and Ino identify the backing file (its st_dev and st_ino, from
	// LOOP_GET_STATUS64 lo_device/lo_inode).
	Dev       uint64 `json:"dev"`
	Ino       uint64 `json:"ino"`
	Offset    int64  `json:"offset"`
	SizeLimit int64  `json:"sizelimit"`
	ReadOnly  bool   `json:"readonly"`
	Autoclear bool   `json:"autoclear"`
	DirectIO  bool   `json:"dio"`
	// File is the open device returned by Attach (nil from List and
	// Lookup). It keeps an autoclear device bound until the caller has
	// mounted it; call Close after mounting.
	File *os.File `json:"-"`
}

// Close closes the handle Attach left open. For an autoclear device that
// nothing mounts or holds, this detaches it.
func (d *Device) Close() error {
	if d == nil || d.File == nil {
		return nil
	}
	err := d.File.Close()
	d.File = nil
	if err != nil {
		return &Error{Op: "close", Device: d.Path, Backing: d.Backing, Err: errnoOf(err)}
	}
	return nil
}

// Detach clears the device (LOOP_CLR_FD) through the handle Attach left
// open, then closes the handle. When the handle is already closed it
// reopens d.Path and clears it only if it is still bound to d's backing
// file (same st_dev/st_ino), so a stale Device never clears a device that
// has since been given to someone else (ENXIO then). Like the
// package-level Detach it is deferred by the kernel while something else
// still holds the device; use WaitDetached to confirm.
func (d *Device) Detach() error {
	f := d.File
	if f == nil {
		var err error
		f, err = os.OpenFile(d.Path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return &Error{Op: "detach", Device: d.Path, Backing: d.Backing, Err: errnoOf(err)}
		}
		defer f.Close()
		info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
		if err != nil {
			return &Error{Op: "detach", Device: d.Path, Backing: d.Backing, Err: err}
		}
		if info.Device != d.Dev || info.Inode != d.Ino {
			return &Error{Op: "detach", Device: d.Path, Backing: d.Backing,
				Err: fmt.Errorf("%w: now bound to another file", unix.ENXIO)}
		}
	}
	err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
	cerr := d.Close()
	if err != nil {
		return &Error{Op: "detach", Device: d.Path, Backing: d.Backing, Err: err}
	}
	return cerr
}

func (d *Device) String() string {
	s := d.Path + ": " + d.Backing
	if d.Offset != 0 {
		s += fmt.Sprintf(" offset %d", d.Offset)
	}
	if d.SizeLimit != 0 {
		s += fmt.Sprintf(" sizelimit %d", d.SizeLimit)
	}
	if d.ReadOnly {
		s += " ro"
	}
	if d.Autoclear {
		s += " autoclear"
	}
	if d.DirectIO {
		s += " dio"
	}
	return s
}

// Error is a failed loop operation. It keeps the errno (or one of this
// package's sentinel errors) so that errors.Is(err, unix.EBUSY) works.
type Error struct {
	Op      string // "attach", "detach", "open backing", "get free device", ...
	Device  string // /dev/loopN or /dev/loop-control, when known
	Backing string // the backing file, when known
	Err     error
}

func (e *Error) Error() string {
	s := "loop " + e.Op
	if e.Device != "" {
		s += " " + e.Device
	}
	if e.Backing != "" {
		s += " (backing " + e.Backing + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// errnoOf strips *os.PathError and *os.SyscallError so that Error carries
// the bare errno (its own fields already say which file).
func errnoOf(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// Attach binds backing to a free loop device with the given options and
// returns the device with File open. The kernel's view of the device is
// checked against opt before returning (ErrNotApplied otherwise). On any
// error nothing stays bound that Attach bound.
//
// Attach uses LOOP_CONFIGURE (Linux 5.8+) and falls back to LOOP_SET_FD +
// LOOP_SET_STATUS64 when the kernel answers ENOTTY or EINVAL. When another
// process takes the free device first (EBUSY), it asks for a new free
// device, up to MaxAttachTries times; it never clears a device it did not
// bind. A missing /dev/loopN node (no udev, static /dev) is created.
func Attach(backing string, opt Options) (*Device, error) {
	if opt.Offset < 0 || opt.SizeLimit < 0 {
		return nil, &Error{Op: "attach", Backing: backing,
			Err: fmt.Errorf("%w: negative offset or size limit", unix.EINVAL)}
	}
	if abs, err := filepath.Abs(backing); err == nil {
		backing = abs
	}
	mode := os.O_RDWR
	if opt.ReadOnly {
		mode = os.O_RDONLY
	}
	bf, err := os.OpenFile(backing, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Op: "open backing", Backing: backing, Err: errnoOf(err)}
	}
	// The loop device takes its own reference to the file.
	defer bf.Close()
	return attachFile(bf, backing, opt)
}

// AttachFile is Attach of a file the caller has open (read-write, or
// read-only for ReadOnly): the device is bound to exactly that file,
// whatever its path names meanwhile (ovmount attaches the image it
// locked and checked). f stays the caller's to close; the device holds
// its own reference.
func AttachFile(f *os.File, opt Options) (*Device, error) {
	if opt.Offset < 0 || opt.SizeLimit < 0 {
		return nil, &Error{Op: "attach", Backing: f.Name(),
			Err: fmt.Errorf("%w: negative offset or size limit", unix.EINVAL)}
	}
	return attachFile(f, f.Name(), opt)
}

func attachFile(bf *os.File, backing string, opt Options) (*Device, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(bf.Fd()), &st); err != nil {
		return nil, &Error{Op: "stat backing", Backing: backing, Err: err}
	}
	want := int64(-1) // expected device size in bytes, when known
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if opt.Offset >= st.Size {
			return nil, &Error{Op: "attach", Backing: backing,
				Err: fmt.Errorf("%w: offset %d is not inside the %d-byte file", unix.EINVAL, opt.Offset, st.Size)}
		}
		if opt.SizeLimit > 0 && opt.SizeLimit > st.Size-opt.Offset {
			// A partition that ends past the end of its image file: the
			// file is truncated or the table is wrong; do not mount it.
			return nil, &Error{Op: "attach", Backing: backing,
				Err: fmt.Errorf("%w: offset %d + size limit %d ends past the end of the %d-byte file", unix.EINVAL, opt.Offset, opt.SizeLimit, st.Size)}
		}
		want = st.Size - opt.Offset
		if opt.SizeLimit > 0 && opt.SizeLimit < want {
			want = opt.SizeLimit
		}
		want &^= 511
	case unix.S_IFBLK:
	default:
		return nil, &Error{Op: "attach", Backing: backing,
			Err: fmt.Errorf("%w: not a regular file or block device", unix.EINVAL)}
	}

	ctl, err := os.OpenFile(ControlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		err = errnoOf(err)
		if err == unix.ENOENT || err == unix.ENODEV || err == unix.ENXIO {
			err = fmt.Errorf("%w (no loop driver: load it with `modprobe loop` or build the kernel with CONFIG_BLK_DEV_LOOP)", err)
		}
		return nil, &Error{Op: "open", Device: ControlPath, Backing: backing, Err: err}
	}
	defer ctl.Close()

	info := unix.LoopInfo64{Offset: uint64(opt.Offset), Sizelimit: uint64(opt.SizeLimit)}
	if opt.ReadOnly {
		info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	if opt.Autoclear {
		info.Flags |= unix.LO_FLAGS_AUTOCLEAR
	}
	if opt.DirectIO {
		info.Flags |= unix.LO_FLAGS_DIRECT_IO
	}
	copy(info.File_name[:len(info.File_name)-1], backing)

	var lastErr error
	for try := 0; try < MaxAttachTries; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, &Error{Op: "get free device", Device: ControlPath, Backing: backing, Err: err}
		}
		path := filepath.Join(devDir, "loop"+strconv.Itoa(n))
		lf, err := openNode(path, n, opt.ReadOnly)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				// Removed (LOOP_CTL_REMOVE) between GET_FREE and open.
				lastErr = err
				continue
			}
			return nil, &Error{Op: "open", Device: path, Backing: backing, Err: errnoOf(err)}
		}
		op, err := bind(lf, bf, info)
		if errors.Is(err, unix.EBUSY) {
			// Someone else bound it first: it is theirs, ask again, after
			// a short random pause once it has happened twice (a crowd
			// of attachers otherwise keeps colliding on the same device).
			busyRetries.Add(1)
			lf.Close()
			lastErr = err
			if try >= 1 {
				time.Sleep(time.Duration(rand.IntN(500*(try+1))) * time.Microsecond)
			}
			continue
		}
		if err != nil {
			lf.Close()
			return nil, &Error{Op: op, Device: path, Backing: backing, Err: err}
		}
		d, err := check(lf, path, n, opt, &st, want)
		if err != nil {
			// We bound it: undo. With autoclear the clear completes when
			// lf, our only open, is closed.
			unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
			lf.Close()
			return nil, &Error{Op: "attach", Device: path, Backing: backing, Err: err}
		}
		if d.Backing == "" {
			d.Backing = backing
		}
		for m := maxRetries.Load(); int64(try) > m && !maxRetries.CompareAndSwap(m, int64(try)); m = maxRetries.Load() {
		}
		return d, nil
	}
	return nil, &Error{Op: "attach", Backing: backing,
		Err: fmt.Errorf("no free loop device after %d tries: %w", MaxAttachTries, lastErr)}
}

// bind configures lf to use bf. It returns the name of the failing step.
// On the LOOP_SET_FD path, a failed LOOP_SET_STATUS64 clears the device
// it has just bound (and only that one).
func bind(lf, bf *os.File, info unix.LoopInfo64) (op string, retErr error) {
	fd := int(lf.Fd())
	if !forceLegacy.Load() {
		err := unix.IoctlLoopConfigure(fd, &unix.LoopConfig{Fd: uint32(bf.Fd()), Info: info})
		if err == nil {
			boundByConfigure.Add(1)
			return "configure", nil
		}
		if err != unix.ENOTTY && err != unix.EINVAL {
			return "configure", err
		}
	}
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_FD, int(bf.Fd())); err != nil {
		return "set fd", err
	}
	defer func() {
		if retErr != nil {
			unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		}
	}()
	var err error
	for i := 0; i < setStatusTries; i++ {
		info := info // the kernel may write back into it
		if statusHook != nil {
			statusHook(&info)
		}
		if err = unix.IoctlLoopSetStatus64(fd, &info); err != unix.EAGAIN {
			break
		}
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
	}
	if err != nil {
		return "set status", err
	}
	if info.Flags&unix.LO_FLAGS_DIRECT_IO != 0 {
		// LOOP_SET_STATUS64 cannot set it; best effort like LOOP_CONFIGURE.
		unix.IoctlSetInt(fd, unix.LOOP_SET_DIRECT_IO, 1)
	}
	boundBySetFD.Add(1)
	return "set status", nil
}

// check reads the device back and compares it with what was asked.
func check(lf *os.File, path string, n int, opt Options, st *unix.Stat_t, want int64) (*Device, error) {
	info, err := unix.IoctlLoopGetStatus64(int(lf.Fd()))
	if err != nil {
		return nil, fmt.Errorf("get status: %w", err)
	}
	d := fromInfo(path, n, info)
	d.File = lf
	var bad []string
	if d.Offset != opt.Offset {
		bad = append(bad, fmt.Sprintf("offset %d (asked %d)", d.Offset, opt.Offset))
	}
	if d.SizeLimit != opt.SizeLimit {
		bad = append(bad, fmt.Sprintf("sizelimit %d (asked %d)", d.SizeLimit, opt.SizeLimit))
	}
	if d.Autoclear != opt.Autoclear {
		bad = append(bad, fmt.Sprintf("autoclear %v (asked %v)", d.Autoclear, opt.Autoclear))
	}
	if opt.ReadOnly && !d.ReadOnly {
		bad = append(bad, "read-write (asked read-only)")
	}
	if d.Dev != uint64(st.Dev) || d.Ino != uint64(st.Ino) {
		bad = append(bad, fmt.Sprintf("backing dev/ino %d/%d (file is %d/%d)", d.Dev, d.Ino, uint64(st.Dev), uint64(st.Ino)))
	}
	if want >= 0 {
		size, err := blkSize(int(lf.Fd()))
		if err != nil {
			return nil, fmt.Errorf("get size: %w", err)
		}
		if int64(size) != want {
			bad = append(bad, fmt.Sprintf("size %d bytes (expected %d)", size, want))
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotApplied, strings.Join(bad, ", "))
	}
	if b, err := os.ReadFile(filepath.Join(sysBlock, filepath.Base(path), "loop", "backing_file")); err == nil {
		d.Backing = strings.TrimSuffix(string(b), "\n")
	}
	return d, nil
}

func blkSize(fd int) (uint64, error) {
	var size uint64
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.BLKGETSIZE64), uintptr(unsafe.Pointer(&size)))
	if e != 0 {
		return 0, e
	}
	return size, nil
}

func fromInfo(path string, n int, info *unix.LoopInfo64) *Device {
	name := info.File_name[:]
	if i := strings.IndexByte(string(name), 0); i >= 0 {
		name = name[:i]
	}
	return &Device{
		Path:      path,
		Index:     n,
		Backing:   string(name),
		Dev:       info.Device,
		Ino:       info.Inode,
		Offset:    int64(info.Offset),
		SizeLimit: int64(info.Sizelimit),
		ReadOnly:  info.Flags&unix.LO_FLAGS_READ_ONLY != 0,
		Autoclear: info.Flags&unix.LO_FLAGS_AUTOCLEAR != 0,
		DirectIO:  info.Flags&unix.LO_FLAGS_DIRECT_IO != 0,
	}
}

// openNode opens /dev/loopN, creating the node when it is missing.
func openNode(path string, n int, readOnly bool) (*os.File, error) {
	mode := os.O_RDWR
	if readOnly {
		mode = os.O_RDONLY
	}
	f, err := os.OpenFile(path, mode|unix.O_CLOEXEC, 0)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return f, err
	}
	major, minor := uint32(Major), uint32(n)
	if b, rerr := os.ReadFile(filepath.Join(sysBlock, "loop"+strconv.Itoa(n), "dev")); rerr == nil {
		if ma, mi, ok := strings.Cut(strings.TrimSpace(string(b)), ":"); ok {
			a, e1 := strconv.ParseUint(ma, 10, 32)
			i, e2 := strconv.ParseUint(mi, 10, 32)
			if e1 == nil && e2 == nil {
				major, minor = uint32(a), uint32(i)
			}
		}
	}
	if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil && err != unix.EEXIST {
		return nil, &os.PathError{Op: "mknod", Path: path, Err: err}
	}
	return os.OpenFile(path, mode|unix.O_CLOEXEC, 0)
}

// Detach clears the loop device at path (LOOP_CLR_FD). The errno is kept:
// ENXIO when the device is not bound, ENOENT when there is no such node.
// While something else still holds the device open or mounted the kernel
// only marks it for autoclear and returns success; the detach happens
// when the last holder goes. Use WaitDetached to confirm.
func Detach(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &Error{Op: "detach", Device: path, Err: errnoOf(err)}
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil {
		if err == unix.ENXIO {
			return &Error{Op: "detach", Device: path, Err: fmt.Errorf("%w (not attached)", err)}
		}
		return &Error{Op: "detach", Device: path, Err: err}
	}
	return nil
}

// WaitDetached polls until d.Path no longer has d's backing file (it is
// unbound, removed, or bound to another file), or timeout passes
// (ErrStillAttached). An autoclear device is detached asynchronously after
// its last holder goes: call it after the last unmount and after
// Device.Close. It opens nothing while sysfs says the device is still
// bound to the same file.
func WaitDetached(d *Device, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	sleep := time.Millisecond
	for {
		gone, err := detached(d)
		if err != nil {
			return &Error{Op: "wait detached", Device: d.Path, Backing: d.Backing, Err: err}
		}
		if gone {
			return nil
		}
		if !time.Now().Before(deadline) {
			return &Error{Op: "wait detached", Device: d.Path, Backing: d.Backing,
				Err: fmt.Errorf("%w after %v", ErrStillAttached, timeout)}
		}
		time.Sleep(sleep)
		if sleep < 20*time.Millisecond {
			sleep *= 2
		}
	}
}

// detached reports whether d.Path no longer has d's backing file.
func detached(d *Device) (bool, error) {
	name := filepath.Base(d.Path)
	if _, err := os.Stat(sysBlock); err == nil {
		if _, err := os.Stat(filepath.Join(sysBlock, name)); errors.Is(err, os.ErrNotExist) {
			return true, nil // device removed
		}
		b, err := os.ReadFile(filepath.Join(sysBlock, name, "loop", "backing_file"))
		if errors.Is(err, os.ErrNotExist) {
			return true, nil // unbound
		}
		if err == nil && strings.TrimSuffix(string(b), "\n") == d.Backing {
			return false, nil
		}
		// Another name: renamed, or rebound to another file. Ask the device.
	}
	f, err := os.OpenFile(d.Path, os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENOENT) {
		return true, nil
	}
	if errors.Is(err, unix.ENXIO) {
		return false, nil // being torn down; sysfs will tell next time
	}
	if err != nil {
		return false, errnoOf(err)
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if err == unix.ENXIO {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return info.Device != d.Dev || info.Inode != d.Ino, nil
}

// List returns every bound loop device, ordered by index, from sysfs
// (/sys/block/loop*/loop) and LOOP_GET_STATUS64. A device being torn down
// while List runs is left out.
func List() ([]Device, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, &Error{Op: "list", Err: errnoOf(err)}
	}
	var out []Device
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "loop")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(sysBlock, e.Name(), "loop")); err != nil {
			continue // not bound
		}
		d, err := status(n)
		if err != nil {
			if errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT) {
				continue // unbound or removed meanwhile
			}
			return nil, err
		}
		out = append(out, *d)
	}
	sortByIndex(out)
	return out, nil
}

// status describes bound device n: LOOP_GET_STATUS64 through the node,
// or sysfs alone when the node cannot be opened (no /dev/loopN node).
func status(n int) (*Device, error) {
	name := "loop" + strconv.Itoa(n)
	path := filepath.Join(devDir, name)
	sys := filepath.Join(sysBlock, name, "loop")
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ENXIO) {
			return nil, &Error{Op: "status", Device: path, Err: unix.ENXIO}
		}
		return fromSysfs(path, n, sys)
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if err != nil {
		return nil, &Error{Op: "status", Device: path, Err: err}
	}
	d := fromInfo(path, n, info)
	if b, err := os.ReadFile(filepath.Join(sys, "backing_file")); err == nil {
		d.Backing = strings.TrimSuffix(string(b), "\n")
	}
	return d, nil
}

func fromSysfs(path string, n int, sys string) (*Device, error) {
	read := func(f string) string {
		b, _ := os.ReadFile(filepath.Join(sys, f))
		return strings.TrimSpace(string(b))
	}
	back := read("backing_file")
	if back == "" {
		return nil, &Error{Op: "status", Device: path, Err: unix.ENXIO}
	}
	d := &Device{Path: path, Index: n, Backing: back}
	d.Offset, _ = strconv.ParseInt(read("offset"), 10, 64)
	d.SizeLimit, _ = strconv.ParseInt(read("sizelimit"), 10, 64)
	d.Autoclear = read("autoclear") == "1"
	d.DirectIO = read("dio") == "1"
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(sys), "ro")); err == nil {
		d.ReadOnly = strings.TrimSpace(string(b)) == "1"
	}
	var st unix.Stat_t
	if err := unix.Stat(back, &st); err == nil {
		d.Dev, d.Ino = uint64(st.Dev), uint64(st.Ino)
	}
	return d, nil
}

func sortByIndex(ds []Device) {
	slices.SortFunc(ds, func(a, b Device) int { return a.Index - b.Index })
}

// Lookup returns the bound devices whose backing file is the file at
// backing, compared by st_dev/st_ino (a hard link, bind mount or other
// path to the same file matches; a copy does not).
func Lookup(backing string) ([]Device, error) {
	var st unix.Stat_t
	if err := unix.Stat(backing, &st); err != nil {
		return nil, &Error{Op: "lookup", Backing: backing, Err: err}
	}
	return LookupID(uint64(st.Dev), uint64(st.Ino))
}

// LookupID returns the bound devices whose backing file has st_dev dev
// and st_ino ino. Loop devices are global: this sees those of every
// mount namespace.
func LookupID(dev, ino uint64) ([]Device, error) {
	all, err := List()
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, d := range all {
		if d.Dev == dev && d.Ino == ino {
			out = append(out, d)
		}
	}
	return out, nil
}

// Status describes the device at path (/dev/loopN) when it is bound;
// an error satisfying errors.Is(err, unix.ENXIO) when it is not.
func Status(path string) (*Device, error) {
	name := filepath.Base(path)
	rest, ok := strings.CutPrefix(name, "loop")
	n, err := strconv.Atoi(rest)
	if !ok || err != nil || filepath.Dir(path) != devDir {
		return nil, &Error{Op: "status", Device: path, Err: fmt.Errorf("%w: not a loop device", unix.EINVAL)}
	}
	if _, err := os.Stat(filepath.Join(sysBlock, name, "loop")); errors.Is(err, os.ErrNotExist) {
		return nil, &Error{Op: "status", Device: path, Err: unix.ENXIO}
	}
	return status(n)
}
