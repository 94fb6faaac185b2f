package layer

import (
	"bytes"
	"errors"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Overlay xattrs.
const (
	OpaqueXattr   = "trusted.overlay.opaque"
	overlayPrefix = "trusted.overlay."
)

// IsWhiteout reports whether st describes an overlay whiteout (char 0:0).
func IsWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// MakeWhiteout creates an overlay whiteout at path.
func MakeWhiteout(path string) error {
	// A whiteout is a character device 0:0 with mode 0000.
	if err := unix.Mknod(path, unix.S_IFCHR, 0); err != nil {
		return &os.PathError{Op: "mknod whiteout", Path: path, Err: err}
	}
	return nil
}

// IsOpaque reports whether the directory at path is an opaque overlay
// directory.
func IsOpaque(path string) bool {
	v, err := getxattr(path, OpaqueXattr)
	return err == nil && string(v) == "y"
}

// SetOpaque marks the directory at path opaque.
func SetOpaque(path string) error {
	if err := unix.Lsetxattr(path, OpaqueXattr, []byte("y"), 0); err != nil {
		return &os.PathError{Op: "setxattr " + OpaqueXattr, Path: path, Err: err}
	}
	return nil
}

func lstat(path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return &st, nil
}

// listxattr returns the xattr names of path (not following symlinks),
// sorted.
func listxattr(path string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: path, Err: err}
		}
		if n == 0 {
			return nil, nil
		}
		var names []string
		for _, b := range bytes.Split(buf[:n-1], []byte{0}) {
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		sort.Strings(names)
		return names, nil
	}
}

func getxattr(path, name string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// Xattrs returns every extended attribute of path (not following a
// symbolic link), overlayfs's own included.
func Xattrs(path string) (map[string][]byte, error) { return xattrs(path, false) }

// xattrs returns path's xattrs; overlay's own are left out when
// skipOverlay is set.
func xattrs(path string, skipOverlay bool) (map[string][]byte, error) {
	names, err := listxattr(path)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	m := make(map[string][]byte, len(names))
	for _, n := range names {
		if skipOverlay && strings.HasPrefix(n, overlayPrefix) {
			continue
		}
		v, err := getxattr(path, n)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + n, Path: path, Err: err}
		}
		m[n] = v
	}
	return m, nil
}

func copyXattrs(dst, src string, skipOverlay bool) error {
	m, err := xattrs(src, skipOverlay)
	if err != nil {
		return err
	}
	for n, v := range m {
		if err := unix.Lsetxattr(dst, n, v, 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) && !strings.HasPrefix(n, "trusted.") {
				continue // e.g. security.selinux on a filesystem without it
			}
			return &os.PathError{Op: "setxattr " + n, Path: dst, Err: err}
		}
	}
	return nil
}

func sameXattrs(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// meta is the part of a stat result the copy needs, kept small: a plan
// holds one per entry of the tree (memory on 32 MB devices).
type meta struct {
	mode   uint32
	uid    uint32
	gid    uint32
	nlink  uint32
	size   int64
	blocks int64
	rdev   uint64
	atim   unix.Timespec
	mtim   unix.Timespec
}

func metaOf(st *unix.Stat_t) meta {
	return meta{mode: st.Mode, uid: st.Uid, gid: st.Gid, nlink: uint32(st.Nlink), size: st.Size,
		blocks: st.Blocks, rdev: uint64(st.Rdev), atim: st.Atim, mtim: st.Mtim}
}

func (m *meta) typ() uint32 { return m.mode & unix.S_IFMT }

// setOwnerMode sets owner and mode (not for symlinks) of dst from st.
func setOwnerMode(dst string, st *meta) error {
	if err := unix.Lchown(dst, int(st.uid), int(st.gid)); err != nil && !(errors.Is(err, unix.EPERM) && os.Geteuid() != 0) {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	if st.typ() != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.mode&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	return nil
}

func setTimes(dst string, st *meta) error {
	ts := []unix.Timespec{st.atim, st.mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: dst, Err: err}
	}
	return nil
}
