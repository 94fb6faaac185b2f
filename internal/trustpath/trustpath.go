package trustpath

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUntrusted is what every refusal wraps when no system call failed:
// errors.Is(err, trustpath.ErrUntrusted).
var ErrUntrusted = errors.New("not trusted")

// maxLinks bounds the symbolic links followed in one path (as the
// kernel's MAXSYMLINKS).
const maxLinks = 40

// Error says which part of a path is not trusted, and why.
type Error struct {
	Path string // the path asked about
	At   string // the component at fault (Path itself for the file)
	Msg  string // what is wrong and how to fix it
	Err  error  // the errno when a system call failed, else ErrUntrusted
}

func (e *Error) Error() string {
	s := e.At
	if s == "" {
		s = e.Path
	}
	s += ": " + e.Msg
	if e.Err != nil && e.Err != ErrUntrusted {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(path, at, format string, a ...any) *Error {
	return &Error{Path: path, At: at, Msg: fmt.Sprintf(format, a...), Err: ErrUntrusted}
}

// OwnerOK reports whether uid may own a trusted path: root, or the user
// running this command (who could write the same things itself).
func OwnerOK(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// Dir checks that nobody but root (or the running user) can change what
// the absolute path dir names: each directory from / down to dir, and
// each symbolic link followed on the way. It returns dir resolved (no
// symbolic links left). A missing component is an *Error whose Err is
// ENOENT (errors.Is(err, fs.ErrNotExist)).
func Dir(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", refuse(dir, dir, "is not an absolute path")
	}
	var st unix.Stat_t
	if err := unix.Lstat("/", &st); err != nil {
		return "", &Error{Path: dir, At: "/", Msg: "cannot stat", Err: err}
	}
	if err := checkDir(dir, "/", &st); err != nil {
		return "", err
	}
	todo := components(dir)
	cur := "/"
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		if err := unix.Lstat(next, &st); err != nil {
			msg := "cannot stat"
			if err == unix.ENOENT {
				msg = "does not exist"
			}
			return "", &Error{Path: dir, At: next, Msg: msg, Err: err}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			if !OwnerOK(st.Uid) {
				return "", refuse(dir, next, "is a symbolic link owned by uid %d, not root: its owner decides where %s leads (replace it with a root-owned link or the directory itself)", st.Uid, dir)
			}
			if links++; links > maxLinks {
				return "", &Error{Path: dir, At: next, Msg: "too many symbolic links", Err: unix.ELOOP}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", &Error{Path: dir, At: next, Msg: "cannot read the link", Err: err}
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			todo = append(components(target), todo...)
		case unix.S_IFDIR:
			if err := checkDir(dir, next, &st); err != nil {
				return "", err
			}
			cur = next
		default:
			return "", &Error{Path: dir, At: next, Msg: "is not a directory", Err: unix.ENOTDIR}
		}
	}
	return cur, nil
}

func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// checkDir refuses a directory someone else could change entries of.
func checkDir(path, at string, st *unix.Stat_t) error {
	if !OwnerOK(st.Uid) {
		return refuse(path, at, "directory owned by uid %d, not root: its owner could replace %s (use a root-owned directory, or run: chown root %s)", st.Uid, path, at)
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return refuse(path, at, "directory writable by group or others (mode %04o) without the sticky bit: anyone could replace %s (run: chmod go-w %s)", st.Mode&0o7777, path, at)
	}
	return nil
}

// Open opens the file at the absolute path with flag (O_NOFOLLOW and
// O_CLOEXEC are always added) after checking its directories with Dir,
// and checks the open file with CheckFile: a symbolic link there is
// refused, never followed. perm is used when flag has O_CREAT.
func Open(path string, flag int, perm uint32) (*os.File, error) {
	rdir, err := Dir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	return open(path, filepath.Join(rdir, filepath.Base(path)), flag, perm)
}

// OpenIn opens name (one path component) in the directory dir, which the
// caller has already checked (for example RUN_DIR), as Open does.
func OpenIn(dir, name string, flag int, perm uint32) (*os.File, error) {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return nil, refuse(filepath.Join(dir, name), name, "is not a file name")
	}
	p := filepath.Join(dir, name)
	return open(p, p, flag, perm)
}

func open(path, real string, flag int, perm uint32) (*os.File, error) {
	fd, err := unix.Open(real, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, perm)
	if err == unix.ELOOP {
		return nil, refuse(path, path, "is a symbolic link; only a regular file is trusted here (replace the link with the file itself)")
	}
	if err != nil {
		msg := "cannot open"
		if err == unix.ENOENT {
			msg = "does not exist"
		}
		return nil, &Error{Path: path, At: path, Msg: msg, Err: err}
	}
	// O_NONBLOCK only kept a FIFO from blocking the open; CheckFile
	// refuses anything but a regular file.
	unix.SetNonblock(fd, false)
	f := os.NewFile(uintptr(fd), path)
	if err := CheckFile(f, flag&(unix.O_WRONLY|unix.O_RDWR) != 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CheckFile checks an open file: a regular file owned by root (or the
// running user), not writable by group or others; with written set also
// only one link (a second name elsewhere would receive what is written).
func CheckFile(f *os.File, written bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &Error{Path: f.Name(), At: f.Name(), Msg: "cannot stat", Err: err}
	}
	p := f.Name()
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return refuse(p, p, "is not a regular file")
	case !OwnerOK(st.Uid):
		return refuse(p, p, "is owned by uid %d, not root (run: chown root:root %s)", st.Uid, p)
	case st.Mode&0o022 != 0:
		return refuse(p, p, "is writable by group or others (mode %04o; run: chmod go-w %s)", st.Mode&0o7777, p)
	case written && st.Nlink != 1:
		return refuse(p, p, "has %d hard links; a state file must have one (remove it and run the command again)", st.Nlink)
	}
	return nil
}

// ReadFile reads the trusted file at path (Open), refusing one larger
// than max bytes.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := Open(path, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readMax(f, path, max)
}

func readMax(f *os.File, path string, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, &Error{Path: path, At: path, Msg: "cannot read", Err: err}
	}
	if int64(len(b)) > max {
		return nil, refuse(path, path, "is larger than %d bytes; not a file ovpkg wrote", max)
	}
	return b, nil
}

// ReadIn is ReadFile of name in the already checked directory dir.
func ReadIn(dir, name string, max int64) ([]byte, error) {
	f, err := OpenIn(dir, name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readMax(f, filepath.Join(dir, name), max)
}
