package layer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Entry describes one path of a tree for comparisons.
type Entry struct {
	Type   byte // 'f' file, 'd' dir, 'l' symlink, 'c' 'b' devices, 'p' fifo, 's' socket, 'w' whiteout
	Mode   uint32
	Uid    uint32
	Gid    uint32
	Size   int64
	Rdev   uint64
	Target string // symlink target
	Sum    string // sha256 of a regular file's contents
	Opaque bool
	Xattrs string // sorted name=value list, overlay's own left out
}

func (e Entry) String() string {
	s := fmt.Sprintf("%c %04o %d:%d", e.Type, e.Mode, e.Uid, e.Gid)
	switch e.Type {
	case 'f':
		s += fmt.Sprintf(" %d bytes sha256:%.12s", e.Size, e.Sum)
	case 'l':
		s += " -> " + e.Target
	case 'c', 'b':
		s += fmt.Sprintf(" %d:%d", unix.Major(e.Rdev), unix.Minor(e.Rdev))
	case 'd':
		if e.Opaque {
			s += " opaque"
		}
	}
	if e.Xattrs != "" {
		s += " xattrs{" + e.Xattrs + "}"
	}
	return s
}

// Tree maps relative paths to entries ("" is not included).
type Tree map[string]Entry

// Snapshot reads the tree under root (not following symlinks).
func Snapshot(root string) (Tree, error) {
	t := Tree{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		e, err := describe(p)
		if err != nil {
			return err
		}
		t[rel] = e
		return nil
	})
	return t, err
}

func describe(p string) (Entry, error) {
	st, err := lstat(p)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Mode: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type, e.Size = 'f', st.Size
		f, err := os.Open(p)
		if err != nil {
			return e, err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return e, err
		}
		e.Sum = hex.EncodeToString(h.Sum(nil))
	case unix.S_IFDIR:
		e.Type = 'd'
		e.Opaque = IsOpaque(p)
	case unix.S_IFLNK:
		e.Type = 'l'
		if e.Target, err = os.Readlink(p); err != nil {
			return e, err
		}
		e.Mode = 0
	case unix.S_IFCHR:
		e.Type, e.Rdev = 'c', uint64(st.Rdev)
		if st.Rdev == 0 {
			e.Type = 'w'
		}
	case unix.S_IFBLK:
		e.Type, e.Rdev = 'b', uint64(st.Rdev)
	case unix.S_IFIFO:
		e.Type = 'p'
	case unix.S_IFSOCK:
		e.Type = 's'
	}
	xs, err := xattrs(p, true)
	if err != nil {
		return e, err
	}
	var kv []string
	for k, v := range xs {
		kv = append(kv, k+"="+string(v))
	}
	sort.Strings(kv)
	e.Xattrs = strings.Join(kv, ",")
	return e, nil
}

// Diff lists the differences between two trees, one line each, sorted
// ("only in a: x", "x: a=..., b=..."). Empty means equal.
func Diff(a, b Tree) []string {
	var out []string
	for p, ea := range a {
		eb, ok := b[p]
		switch {
		case !ok:
			out = append(out, "only in first: "+p+" ("+ea.String()+")")
		case ea != eb:
			out = append(out, p+": "+ea.String()+" != "+eb.String())
		}
	}
	for p, eb := range b {
		if _, ok := a[p]; !ok {
			out = append(out, "only in second: "+p+" ("+eb.String()+")")
		}
	}
	sort.Strings(out)
	return out
}

// Equal reports whether two directories hold the same tree.
func Equal(a, b string) (bool, []string, error) {
	ta, err := Snapshot(a)
	if err != nil {
		return false, nil, err
	}
	tb, err := Snapshot(b)
	if err != nil {
		return false, nil, err
	}
	d := Diff(ta, tb)
	return len(d) == 0, d, nil
}

// Count returns the number of non-directories and regular-file bytes
// under root (for progress totals and reports).
func Count(root string) (files, bytes int64, err error) {
	err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			files++
			if fi.Mode().IsRegular() {
				bytes += fi.Size()
			}
		}
		return nil
	})
	return
}

// DiskUsage returns the bytes of disk blocks used under root (each inode
// counted once). Only hard-linked inodes are remembered: memory does not
// grow with the number of files.
func DiskUsage(root string) (int64, error) {
	seen := map[inodeKey]bool{}
	var total int64
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := lstat(p)
		if err != nil {
			return err
		}
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			k := inodeKey{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}
