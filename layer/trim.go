package layer

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Operations that take files out of an upper layer without changing the
// merged view (or, for Drop, changing only a cache): what package txn uses
// to keep the package manager's bookkeeping out of transaction layers.
// Paths are relative to the layer roots given; a layer root may be a whole
// card tree (holding usr/, etc/, var/) as long as every root and the base
// are addressed the same way. The overlays over these layers must not be
// mounted while anything here changes them.

// FileID names a regular file of a layer as it was when it was listed,
// so that a later removal can check that it is still that file.
type FileID struct {
	Rel    string
	Ino    uint64
	Size   int64
	Blocks int64 // st_blocks (512-byte units)
	Mtim   unix.Timespec
	Ctim   unix.Timespec
}

func fileID(rel string, st *unix.Stat_t) FileID {
	return FileID{Rel: rel, Ino: st.Ino, Size: st.Size, Blocks: st.Blocks, Mtim: st.Mtim, Ctim: st.Ctim}
}

// Bytes is the disk space the file takes.
func (f FileID) Bytes() int64 { return f.Blocks * 512 }

// Unchanged lists the regular files of upper that are identical to what
// the layers below show at the same path: content, mode, owner, xattrs
// (overlay's own aside) and modification time. They are the copies
// overlayfs makes when a file is opened for writing that nothing then
// changed (debconf's databases, lock files). Removing them leaves the
// merged view as it is. below lists the lower directories topmost first,
// the base's own last. Files under an opaque directory and files with
// other hard links are left out. Read-only: the overlay may be mounted.
func Unchanged(upper string, below []string) ([]FileID, error) {
	res := &resolver{below: below}
	var out []FileID
	var firstErr error
	check := func(c candidate) error {
		if c.m.typ() != unix.S_IFREG || c.m.nlink != 1 {
			return nil
		}
		lp, lst := res.lookup(c.rel)
		if lst == nil {
			return nil
		}
		lm := metaOf(lst)
		if lm.typ() != unix.S_IFREG || !sameMeta(&c.m, &lm) || c.m.size != lm.size || c.m.mtim != lm.mtim {
			return nil
		}
		p := filepath.Join(upper, c.rel)
		if same, err := sameContent(p, lp, &c.m); err != nil || !same {
			return err
		}
		if ok, err := sameXattrsAt(p, lp); err != nil || !ok {
			return err
		}
		st, err := lstat(p)
		if err != nil {
			return err
		}
		out = append(out, fileID(c.rel, st))
		return nil
	}
	err := collect(upper, "", func(c candidate) {
		if firstErr == nil {
			firstErr = check(c)
		}
	})
	if err == nil {
		err = firstErr
	}
	return out, err
}

// Files lists the regular files at or under rel in upper (none when it is
// missing).
func Files(upper, rel string) ([]FileID, error) {
	var out []FileID
	root := filepath.Join(upper, rel)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		st, err := lstat(p)
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(upper, p)
		out = append(out, fileID(r, st))
		return nil
	})
	return out, err
}

// RemoveIfSame removes f from upper when the path is still the file f
// named (same inode, size, modification and change times, one link). It reports
// whether it removed it.
func RemoveIfSame(upper string, f FileID) (bool, error) {
	p := filepath.Join(upper, f.Rel)
	st, err := lstat(p)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != f.Ino || st.Size != f.Size || st.Mtim != f.Mtim || st.Ctim != f.Ctim || st.Nlink != 1 {
		return false, nil
	}
	if err := unix.Unlink(p); err != nil {
		return false, &os.PathError{Op: "unlink", Path: p, Err: err}
	}
	return true, nil
}

// SinkSource returns the file Sink would move: the topmost entry at rel
// among layers[1:] when it is a regular file with one link (ok false
// otherwise), and the index of its layer.
func SinkSource(layers []string, rel string) (FileID, int, bool) {
	for i := len(layers) - 1; i >= 1; i-- {
		st, err := lstat(filepath.Join(layers[i], rel))
		if err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
			return FileID{}, i, false
		}
		return fileID(rel, st), i, true
	}
	return FileID{}, -1, false
}

// Sink moves the file at rel out of the upper layers into the lowest one:
// layers are bottom to top, layers[0] receives the topmost copy (a regular
// file with one link) found in layers[1:], and the copies and whiteouts at
// rel in the layers between are removed, so the merged view shows the
// same file. Directories rel needs in layers[0] are made like the source
// layer's. Nothing is done when the topmost entry is anything else, or
// when an opaque directory or a non-directory on the way in the layers
// between (or in layers[0]) would hide or block layers[0]'s copy. It
// returns the indexes of the layers it removed an entry from (the source
// first); none when it did nothing.
func Sink(layers []string, rel string) ([]int, error) {
	rel = filepath.Clean(rel)
	if rel == "." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return nil, nil
	}
	f, k, ok := SinkSource(layers, rel)
	if !ok {
		return nil, nil
	}
	var parents []string // outermost first
	for a := filepath.Dir(rel); a != "."; a = filepath.Dir(a) {
		parents = append([]string{a}, parents...)
	}
	for i := 1; i <= k; i++ {
		for _, a := range parents {
			st, err := lstat(filepath.Join(layers[i], a))
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR || IsOpaque(filepath.Join(layers[i], a)) {
				return nil, nil
			}
		}
		if i < k {
			st, err := lstat(filepath.Join(layers[i], rel))
			if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				return nil, nil
			}
		}
	}
	var missing []string
	for _, a := range parents {
		st, err := lstat(filepath.Join(layers[0], a))
		if errors.Is(err, unix.ENOENT) {
			missing = append(missing, a)
			continue
		}
		if err != nil {
			return nil, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, nil
		}
	}
	if st, err := lstat(filepath.Join(layers[0], rel)); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil, nil
	}
	// The layers between first: while the source is still in place they
	// are hidden by it, so the view never shows an older copy.
	touched := []int{k}
	for i := k - 1; i >= 1; i-- {
		p := filepath.Join(layers[i], rel)
		if err := unix.Unlink(p); err == nil {
			touched = append(touched, i)
		} else if !errors.Is(err, unix.ENOENT) {
			return nil, &os.PathError{Op: "unlink", Path: p, Err: err}
		}
	}
	for _, a := range missing {
		if err := mkdirLike(filepath.Join(layers[0], a), filepath.Join(layers[k], a)); err != nil {
			return nil, err
		}
	}
	src, dst := filepath.Join(layers[k], rel), filepath.Join(layers[0], rel)
	if st, err := lstat(src); err != nil || st.Ino != f.Ino {
		return nil, err
	}
	if err := unix.Rename(src, dst); err != nil {
		return nil, &os.LinkError{Op: "rename", Old: src, New: dst, Err: err}
	}
	return touched, nil
}

// mkdirLike makes directory dst with the mode, owner, xattrs (overlay's
// own aside) and times of directory like.
func mkdirLike(dst, like string) error {
	st, err := lstat(like)
	if err != nil {
		return err
	}
	m := metaOf(st)
	if err := unix.Mkdir(dst, 0o700); err != nil {
		return &os.PathError{Op: "mkdir", Path: dst, Err: err}
	}
	if err := copyXattrs(dst, like, true); err != nil {
		return err
	}
	if err := setOwnerMode(dst, &m); err != nil {
		return err
	}
	return setTimes(dst, &m)
}

// PruneEmpty removes, from upper, the directories on the way to each of
// rels (deepest first) that are empty, not opaque, and that the layers
// below (topmost first, the base's own last) show as a directory with
// the same mode, owner and xattrs: the merged view keeps them. The
// first level (the overlay's upper directories of a card tree) is never
// removed. It returns how many it removed.
func PruneEmpty(upper string, rels []string, below []string) (int, error) {
	seen := map[string]bool{}
	var dirs []string
	for _, r := range rels {
		for a := filepath.Dir(filepath.Clean(r)); a != "." && strings.Contains(a, "/"); a = filepath.Dir(a) {
			if !seen[a] {
				seen[a] = true
				dirs = append(dirs, a)
			}
		}
	}
	// deepest first, so a parent sees its children gone
	sort.Slice(dirs, func(i, j int) bool {
		if ci, cj := strings.Count(dirs[i], "/"), strings.Count(dirs[j], "/"); ci != cj {
			return ci > cj
		}
		return dirs[i] < dirs[j]
	})
	n := 0
	for _, a := range dirs {
		p := filepath.Join(upper, a)
		st, err := lstat(p)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || IsOpaque(p) {
			continue
		}
		names, err := readNames(p)
		if err != nil || len(names) > 0 {
			continue
		}
		lp, lst := lookupBelow(below, a)
		if lst == nil || lst.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if um, lm := metaOf(st), metaOf(lst); !sameMeta(&um, &lm) {
			continue
		}
		if ok, err := sameXattrsAt(p, lp); err != nil || !ok {
			continue
		}
		if err := unix.Rmdir(p); err != nil {
			return n, &os.PathError{Op: "rmdir", Path: p, Err: err}
		}
		n++
	}
	return n, nil
}
