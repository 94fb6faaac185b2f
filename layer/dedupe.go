package layer

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DedupeStats is what Dedupe removed.
type DedupeStats struct {
	Files int64 // regular files and symlinks removed
	Dirs  int64 // empty directories removed
	Bytes int64 // disk bytes freed (blocks of inodes whose last link went)
}

// Dedupe removes from upper every regular file and symlink that is
// identical (type, content or target, mode, owner, xattrs other than
// overlay's own) to what the layers below show at the same path, so the
// merged view is unchanged. below lists the lower directories topmost
// first, the base's own directory last. Whiteouts and opaque directories
// are never touched; a directory left empty is removed when the view
// below has a directory there with the same mode, owner and xattrs. The
// upper's root itself is never removed. The overlay over upper must not be
// mounted while Dedupe runs.
func Dedupe(upper string, below []string) (DedupeStats, error) {
	var st DedupeStats
	_, err := dedupeDir(upper, "", below, &st)
	return st, err
}

// dedupeDir returns whether rel is empty afterwards.
func dedupeDir(upper, rel string, below []string, st *DedupeStats) (bool, error) {
	dir := filepath.Join(upper, rel)
	names, err := readNames(dir)
	if err != nil {
		return false, err
	}
	left := len(names)
	for _, n := range names {
		crel := filepath.Join(rel, n)
		p := filepath.Join(upper, crel)
		ust, err := lstat(p)
		if err != nil {
			return false, err
		}
		switch ust.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if IsOpaque(p) {
				continue
			}
			empty, err := dedupeDir(upper, crel, below, st)
			if err != nil {
				return false, err
			}
			if !empty {
				continue
			}
			lp, lst := lookupBelow(below, crel)
			if lst == nil || lst.Mode&unix.S_IFMT != unix.S_IFDIR || !sameMeta(ust, lst) {
				continue
			}
			if ok, err := sameXattrsAt(p, lp); err != nil || !ok {
				continue
			}
			if err := os.Remove(p); err != nil {
				return false, err
			}
			st.Dirs++
			left--
		case unix.S_IFREG, unix.S_IFLNK:
			lp, lst := lookupBelow(below, crel)
			if lst == nil || lst.Mode&unix.S_IFMT != ust.Mode&unix.S_IFMT || !sameMeta(ust, lst) || ust.Size != lst.Size {
				continue
			}
			same, err := sameContent(p, lp, ust)
			if err != nil {
				return false, err
			}
			if !same {
				continue
			}
			if ok, err := sameXattrsAt(p, lp); err != nil || !ok {
				continue
			}
			if err := os.Remove(p); err != nil {
				return false, err
			}
			st.Files++
			if ust.Nlink == 1 {
				st.Bytes += ust.Blocks * 512
			}
			left--
		}
	}
	return left == 0, nil
}

func sameMeta(a, b *unix.Stat_t) bool {
	if a.Uid != b.Uid || a.Gid != b.Gid {
		return false
	}
	if a.Mode&unix.S_IFMT == unix.S_IFLNK {
		return true
	}
	return a.Mode&0o7777 == b.Mode&0o7777
}

func sameXattrsAt(a, b string) (bool, error) {
	xa, err := xattrs(a, true)
	if err != nil {
		return false, err
	}
	xb, err := xattrs(b, true)
	if err != nil {
		return false, err
	}
	return sameXattrs(xa, xb), nil
}

func sameContent(a, b string, st *unix.Stat_t) (bool, error) {
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		ta, err := os.Readlink(a)
		if err != nil {
			return false, err
		}
		tb, err := os.Readlink(b)
		return err == nil && ta == tb, err
	}
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

// lookupBelow resolves rel through the lower directories (topmost first)
// with overlay semantics: the first layer holding rel gives it, unless a
// whiteout or non-directory on the way hides it or an opaque directory
// above stops the search. A whiteout gives "absent".
func lookupBelow(below []string, rel string) (string, *unix.Stat_t) {
	parts := strings.Split(rel, string(filepath.Separator))
layers:
	for _, l := range below {
		// ancestors first
		stop := false
		p := l
		for _, c := range parts[:len(parts)-1] {
			p = filepath.Join(p, c)
			st, err := lstat(p)
			if errors.Is(err, unix.ENOENT) {
				if stop {
					return "", nil
				}
				continue layers
			}
			if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return "", nil // whiteout or file hides everything below
			}
			if IsOpaque(p) {
				stop = true
			}
		}
		full := filepath.Join(l, rel)
		st, err := lstat(full)
		if err != nil {
			if stop {
				return "", nil
			}
			continue
		}
		if IsWhiteout(st) {
			return "", nil
		}
		return full, st
	}
	return "", nil
}
