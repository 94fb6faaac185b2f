package mount

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Error is a failed mount(2) or umount2(2) with everything needed to
// understand it. Unwrap yields the errno.
type Error struct {
	Op     string // "mount", "umount", "remount", "move"
	Source string
	Target string
	FSType string
	Flags  uintptr
	Data   string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.FSType != "" {
		b.WriteString(" -t " + e.FSType)
	}
	if e.Source != "" && e.Op != "umount" {
		b.WriteString(" " + e.Source)
	}
	b.WriteString(" " + e.Target)
	if e.Data != "" {
		d := e.Data
		if len(d) > 200 {
			d = d[:200] + "..."
		}
		b.WriteString(" (" + d + ")")
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if hint := hint(e); hint != "" {
		b.WriteString(" (" + hint + ")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

func hint(e *Error) string {
	switch {
	case errors.Is(e.Err, unix.EBUSY) && e.Op == "umount":
		return "something still uses it"
	case errors.Is(e.Err, unix.EPERM):
		return "run as root"
	case errors.Is(e.Err, unix.ENODEV):
		return "the kernel lacks filesystem type " + e.FSType
	case errors.Is(e.Err, unix.ENOENT):
		return "a path does not exist"
	}
	return ""
}

// Mount calls mount(2). Data is the filesystem's option string.
func Mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		op := "mount"
		switch {
		case flags&unix.MS_REMOUNT != 0:
			op = "remount"
		case flags&unix.MS_MOVE != 0:
			op = "move"
		case flags&unix.MS_BIND != 0:
			op = "bind"
		}
		return &Error{Op: op, Source: source, Target: target, FSType: fstype, Flags: flags, Data: data, Err: err}
	}
	return nil
}

// Unmount calls umount2(2) with flags (0, or unix.MNT_DETACH / MNT_FORCE
// when the caller really means it). EINTR is retried.
func Unmount(target string, flags int) error {
	for {
		err := unix.Unmount(target, flags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &Error{Op: "umount", Target: target, Flags: uintptr(flags), Err: err}
		}
		return nil
	}
}

// Flags renders mount flags the way mount(8) names them, for messages.
func Flags(f uintptr) string {
	names := []struct {
		bit  uintptr
		name string
	}{
		{unix.MS_RDONLY, "ro"}, {unix.MS_NOSUID, "nosuid"}, {unix.MS_NODEV, "nodev"},
		{unix.MS_NOEXEC, "noexec"}, {unix.MS_NOATIME, "noatime"}, {unix.MS_REMOUNT, "remount"},
		{unix.MS_BIND, "bind"}, {unix.MS_MOVE, "move"}, {unix.MS_PRIVATE, "private"},
		{unix.MS_REC, "rec"}, {unix.MS_SYNCHRONOUS, "sync"}, {unix.MS_DIRSYNC, "dirsync"},
	}
	var out []string
	for _, n := range names {
		if f&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return fmt.Sprintf("%#x", f)
	}
	return strings.Join(out, ",")
}
