package beneath

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/atomicfile"
)

// Error is a path below a root that was refused or could not be reached.
// It keeps the errno (errors.Is(err, unix.ELOOP) for a symbolic link,
// unix.EXDEV for a mount point or a way out of the root).
type Error struct {
	Root string // the directory everything is resolved beneath
	Rel  string // the path below it
	Op   string // "open", "remove", ...
	Err  error
}

func (e *Error) Error() string {
	what := e.Err.Error()
	if errors.Is(e.Err, unix.ELOOP) {
		what = "a symbolic link on the way (ovpkg never follows links below " + e.Root + ")"
	} else if errors.Is(e.Err, unix.EXDEV) {
		what = "leads off " + e.Root + " (a mount point or another filesystem on the way)"
	}
	return filepath.Join(e.Root, e.Rel) + ": " + e.Op + ": " + what
}

func (e *Error) Unwrap() error { return e.Err }

// ErrBadPath is a relative path that is not clean or leaves its root.
var ErrBadPath = errors.New("not a clean relative path")

// ForceWalk makes every resolution use the component-by-component walk
// (the fallback for kernels without openat2); for tests.
var ForceWalk = false

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS

// CheckRel validates a path to be resolved beneath a root: relative,
// clean (no "." or ".." components, no doubled or trailing slash), no NUL.
// "." (the root itself) is allowed.
func CheckRel(rel string) error {
	if rel == "." {
		return nil
	}
	if rel == "" || strings.HasPrefix(rel, "/") || filepath.Clean(rel) != rel || rel == ".." ||
		strings.HasPrefix(rel, "../") || strings.ContainsRune(rel, 0) {
		return fmt.Errorf("%q: %w", rel, ErrBadPath)
	}
	return nil
}

// OpenAt opens rel below the directory dirfd: no symbolic link is
// followed (not even the last component), no mount point is crossed and
// nothing outside dirfd is reached. O_CLOEXEC and O_NOFOLLOW are added to
// flags. It uses openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_XDEV; on a kernel without it (ENOSYS) it walks the path one
// component at a time with O_NOFOLLOW and compares each directory's
// st_dev with dirfd's.
func OpenAt(dirfd int, rel string, flags int, mode uint32) (int, error) {
	fd, err := openAt(dirfd, rel, flags, mode)
	if err == unix.ENOTDIR && flags&unix.O_DIRECTORY != 0 {
		// O_DIRECTORY|O_NOFOLLOW on a link says ENOTDIR: say ELOOP.
		if pfd, perr := openAt(dirfd, rel, unix.O_PATH, 0); perr == nil {
			var st unix.Stat_t
			if unix.Fstat(pfd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
			unix.Close(pfd)
		} else if perr == unix.ELOOP {
			err = unix.ELOOP
		}
	}
	return fd, err
}

func openAt(dirfd int, rel string, flags int, mode uint32) (int, error) {
	if err := CheckRel(rel); err != nil {
		return -1, err
	}
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	if !ForceWalk {
		how := unix.OpenHow{Flags: uint64(flags), Resolve: resolveFlags}
		if flags&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
			how.Mode = uint64(mode)
		}
		for i := 0; ; i++ {
			fd, err := unix.Openat2(dirfd, rel, &how)
			if err == unix.EAGAIN && i < 16 { // a rename raced the resolution
				continue
			}
			if err != unix.ENOSYS {
				return fd, err
			}
			break
		}
	}
	return walk(dirfd, rel, flags, mode)
}

// walk is OpenAt for kernels without openat2. A bind mount of the same
// filesystem below the root (same st_dev) is not noticed here.
func walk(dirfd int, rel string, flags int, mode uint32) (int, error) {
	var root unix.Stat_t
	if err := unix.Fstat(dirfd, &root); err != nil {
		return -1, err
	}
	comps := strings.Split(rel, "/")
	cur := dirfd
	defer func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}()
	for i, c := range comps {
		last := i == len(comps)-1
		fl := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			fl = flags
		}
		fd, err := unix.Openat(cur, c, fl, mode)
		if err == unix.ENOTDIR && !last || err == unix.ENOTDIR && flags&unix.O_DIRECTORY != 0 {
			var st unix.Stat_t
			if unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		}
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK { // O_PATH|O_NOFOLLOW opens the link itself
			unix.Close(fd)
			return -1, unix.ELOOP
		}
		if st.Dev != root.Dev {
			unix.Close(fd)
			return -1, unix.EXDEV
		}
		if last {
			return fd, nil
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		cur = fd
	}
	return -1, unix.EINVAL // not reached: comps is never empty
}

// Root is a directory that paths are resolved beneath (the card's mount
// point). Its own path is the caller's to trust (the host side checks it);
// everything below goes through OpenAt.
type Root struct {
	Path string
	fd   int
	Dev  uint64
}

// OpenRoot opens the directory path. It must be a directory.
func OpenRoot(path string) (*Root, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	var st unix.Stat_t
	if err == nil {
		if err = unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return nil, &Error{Root: path, Rel: ".", Op: "open", Err: err}
	}
	return &Root{Path: filepath.Clean(path), fd: fd, Dev: uint64(st.Dev)}, nil
}

// Close releases the root's descriptor.
func (r *Root) Close() error {
	if r == nil || r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Join is the host path of rel (for messages and for the kernel, once
// checked).
func (r *Root) Join(rel string) string { return filepath.Join(r.Path, rel) }

func (r *Root) fail(op, rel string, err error) error {
	var be *Error
	if errors.As(err, &be) {
		return err
	}
	return &Error{Root: r.Path, Rel: rel, Op: op, Err: err}
}

// OpenFD is OpenAt below the root, as a raw descriptor.
func (r *Root) OpenFD(rel string, flags int, mode uint32) (int, error) {
	fd, err := OpenAt(r.fd, rel, flags, mode)
	if err != nil {
		return -1, r.fail("open", rel, err)
	}
	return fd, nil
}

// Open is OpenAt below the root, as an *os.File.
func (r *Root) Open(rel string, flags int, mode uint32) (*os.File, error) {
	fd, err := r.OpenFD(rel, flags, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), r.Join(rel)), nil
}

// split returns the parent of rel (".") and its last component.
func split(rel string) (string, string) {
	d, b := filepath.Split(rel)
	if d == "" {
		return ".", b
	}
	return strings.TrimSuffix(d, "/"), b
}

// parent opens rel's parent directory (O_RDONLY, so that it can be
// fsynced) and returns it with rel's last component.
func (r *Root) parent(op, rel string) (int, string, error) {
	d, b := split(rel)
	err := CheckRel(rel)
	if rel == "." {
		err = ErrBadPath
	}
	fd := -1
	if err == nil {
		fd, err = OpenAt(r.fd, d, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	}
	if err != nil {
		return -1, "", r.fail(op, rel, err)
	}
	return fd, b, nil
}

// Lstat stats rel without following it (a symbolic link on the way is
// refused; the last component may be one).
func (r *Root) Lstat(rel string) (*unix.Stat_t, error) {
	if rel == "." {
		var st unix.Stat_t
		if err := unix.Fstat(r.fd, &st); err != nil {
			return nil, r.fail("stat", rel, err)
		}
		return &st, nil
	}
	pfd, name, err := r.parent("stat", rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, r.fail("stat", rel, err)
	}
	return &st, nil
}

// Dir checks that rel is a directory reached beneath the root (no link,
// no mount point, not even the last component) and returns its stat.
func (r *Root) Dir(rel string) (*unix.Stat_t, error) {
	fd, err := r.OpenFD(rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, r.fail("stat", rel, err)
	}
	return &st, nil
}

// IsDir reports whether rel is a directory beneath the root. A missing
// path is (false, nil); a link, a mount point or a non-directory on the
// way is an error (ENOTDIR for a non-directory at the end).
func (r *Root) IsDir(rel string) (bool, error) {
	_, err := r.Dir(rel)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

// SameDir checks that the host path abs, as the kernel resolves it (for
// an overlay's upperdir, say), names the directory rel beneath the root:
// rel is opened beneath, then both are compared by device and inode.
func (r *Root) SameDir(rel, abs string) error {
	st, err := r.Dir(rel)
	if err != nil {
		return err
	}
	var as unix.Stat_t
	if err := unix.Stat(abs, &as); err != nil {
		return r.fail("stat", rel, err)
	}
	if as.Dev != st.Dev || as.Ino != st.Ino {
		return r.fail("check", rel, fmt.Errorf("%s is not the directory found beneath the card's root: %w", abs, unix.EXDEV))
	}
	return nil
}

// ReadFile reads the regular file rel, at most max bytes (more is an
// error, EFBIG).
func (r *Root) ReadFile(rel string, max int64) ([]byte, error) {
	fd, err := r.OpenFD(rel, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err = unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		err = unix.EINVAL // not a regular file
	}
	var b []byte
	if err == nil {
		b, err = readMax(fd, max)
	}
	if err != nil {
		return nil, r.fail("read", rel, err)
	}
	return b, nil
}

// readMax reads fd to its end; more than max bytes is EFBIG.
func readMax(fd int, max int64) ([]byte, error) {
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
		if int64(len(b)) > max {
			return nil, unix.EFBIG
		}
	}
}

// WriteFile replaces rel atomically (internal/atomicfile.WriteAt in its
// parent, opened beneath): temporary file, fsync, rename, directory fsync.
// A link at rel is replaced, not followed.
func (r *Root) WriteFile(rel string, data []byte, perm os.FileMode) error {
	return r.WriteFileOwned(rel, data, perm, -1, -1)
}

// WriteFileOwned is WriteFile that gives the file owner uid and gid
// (-1: the caller's).
func (r *Root) WriteFileOwned(rel string, data []byte, perm os.FileMode, uid, gid int) error {
	pfd, name, err := r.parent("write", rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := atomicfile.WriteAt(pfd, name, data, atomicfile.Options{Perm: perm, UID: uid, GID: gid}); err != nil {
		return r.fail("write", rel, err)
	}
	return nil
}

// Append appends data to the regular file rel (created with perm when
// missing) and fsyncs it; a new file's directory is fsynced too.
func (r *Root) Append(rel string, data []byte, perm os.FileMode) error {
	fd, err := r.OpenFD(rel, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NONBLOCK, uint32(perm.Perm()))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err = unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		err = unix.EINVAL // not a regular file
	}
	for b := data; err == nil && len(b) > 0; {
		var n int
		n, err = unix.Write(fd, b)
		if n > 0 {
			b = b[n:]
		}
	}
	if err == nil {
		err = unix.Fsync(fd)
	}
	if err == nil && st.Size == 0 { // a new file: its directory entry too
		d, _ := split(rel)
		return r.SyncDir(d)
	}
	if err != nil {
		return r.fail("append", rel, err)
	}
	return nil
}

// Mkdir creates the directory rel (its parent reached beneath).
func (r *Root) Mkdir(rel string, perm os.FileMode) error {
	pfd, name, err := r.parent("mkdir", rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, name, uint32(perm.Perm())); err != nil {
		return r.fail("mkdir", rel, err)
	}
	return nil
}

// MkdirAll creates rel and its missing parents, one component at a time
// beneath the root: an existing component must be a real directory on
// the root's filesystem (a link or a mount point is refused).
func (r *Root) MkdirAll(rel string, perm os.FileMode) error {
	if err := CheckRel(rel); err != nil {
		return r.fail("mkdir", rel, err)
	}
	if rel == "." {
		return nil
	}
	comps := strings.Split(rel, "/")
	for i := range comps {
		p := strings.Join(comps[:i+1], "/")
		ok, err := r.IsDir(p)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if err := r.Mkdir(p, perm); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		if _, err := r.Dir(p); err != nil {
			return err
		}
	}
	return nil
}

// Remove removes the file or empty directory rel (a link is removed, not
// followed).
func (r *Root) Remove(rel string) error {
	pfd, name, err := r.parent("remove", rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	err = unix.Unlinkat(pfd, name, 0)
	if err == unix.EISDIR {
		err = unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return r.fail("remove", rel, err)
	}
	return nil
}

// RemoveAll removes rel and everything below it. It never follows a link
// (links are removed as links) and never enters another filesystem or a
// mount point (refused with EXDEV, and nothing there is touched). A
// missing rel is not an error.
func (r *Root) RemoveAll(rel string) error {
	pfd, name, err := r.parent("remove", rel)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := removeAllAt(pfd, name, r.Dev); err != nil {
		return r.fail("remove", rel, err)
	}
	return nil
}

func removeAllAt(parent int, name string, dev uint64) error {
	err := unix.Unlinkat(parent, name, 0)
	if err != unix.EISDIR {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	fd, err := OpenAt(parent, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err = unix.Fstat(fd, &st); err == nil && uint64(st.Dev) != dev {
		err = unix.EXDEV
	}
	d := os.NewFile(uintptr(fd), name)
	for err == nil {
		var names []string
		names, err = d.Readdirnames(1024)
		for _, n := range names {
			if e := removeAllAt(fd, n, dev); e != nil {
				err = fmt.Errorf("%s/%s: %w", name, n, e)
				break
			}
		}
	}
	d.Close()
	if err != io.EOF {
		return err
	}
	return unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
}

// Rename renames oldrel to newrel, both beneath the root (a link at
// either is renamed or replaced, never followed).
func (r *Root) Rename(oldrel, newrel string) error {
	ofd, oname, err := r.parent("rename", oldrel)
	if err != nil {
		return err
	}
	defer unix.Close(ofd)
	nfd, nname, err := r.parent("rename", newrel)
	if err != nil {
		return err
	}
	defer unix.Close(nfd)
	if err := unix.Renameat(ofd, oname, nfd, nname); err != nil {
		return r.fail("rename", oldrel, err)
	}
	return nil
}

// Entry is one name in a directory with its type (from lstat).
type Entry struct {
	Name string
	Mode uint32 // S_IFDIR, S_IFLNK, or S_IFREG for anything else (from the directory entry)
}

// IsDir reports whether the entry is a directory (not a link to one).
func (e Entry) IsDir() bool { return e.Mode == unix.S_IFDIR }

// ReadDir lists the directory rel (sorted by name is not promised).
func (r *Root) ReadDir(rel string) ([]Entry, error) {
	fd, err := r.OpenFD(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), rel)
	defer d.Close()
	ents, err := d.ReadDir(-1) // types from the directory entries (lstat-like)
	if err != nil {
		return nil, r.fail("list", rel, err)
	}
	out := make([]Entry, len(ents))
	for i, e := range ents {
		out[i] = Entry{Name: e.Name(), Mode: unix.S_IFREG}
		if e.Type()&fs.ModeType == fs.ModeDir {
			out[i].Mode = unix.S_IFDIR
		} else if e.Type()&fs.ModeSymlink != 0 {
			out[i].Mode = unix.S_IFLNK
		}
	}
	return out, nil
}

// SyncDir fsyncs the directory rel.
func (r *Root) SyncDir(rel string) error {
	fd, err := r.OpenFD(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return r.fail("flush", rel, err)
	}
	return nil
}

// Do opens root, runs fn with it and closes it.
func Do(root string, fn func(r *Root) error) error {
	r, err := OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r)
}
