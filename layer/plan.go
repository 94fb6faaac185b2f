package layer

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

type opKind uint8

const (
	opDir opKind = iota
	opFile
	opWhiteout
)

// entry is one entry of the result tree as the walk meets it: its path
// and the layer it comes from (the same relative path in that layer).
// Passed to the visitor and not kept by the walk: memory does not grow
// with the number of files (30 000 entries held at once cost about 10 MB
// of a router's 32).
type entry struct {
	rel      string // path in the result, "" for its root
	m        meta
	dev, ino uint64
	layer    uint16
	kind     opKind
	opaque   bool // directory: mark opaque in the result
}

// walker merges layer directories, visiting the entries of the merged
// view parents first, names sorted in each directory (depth first): the
// working set is the name lists of the directories on the current path.
type walker struct {
	keepWhiteouts bool // result sits over a base: keep whiteouts/opaque flags
	raw           bool // Copy: whiteouts are plain device nodes, nothing merged
	base          string
	roots         []string
	visit         func(e *entry) error // every entry, a directory before its children
	leave         func() error         // after a directory's children (nil: nothing)
}

func (w *walker) src(layer uint16, rel string) string { return filepath.Join(w.roots[layer], rel) }

// baseHas reports whether the base (if known) has an entry at rel, with
// every parent a real directory (a symbolic link on the way is a
// non-directory to overlayfs: nothing below it shows).
func (w *walker) baseHas(rel string) bool {
	if w.base == "" {
		return true
	}
	return existsNoFollow(w.base, rel)
}

// existsNoFollow reports whether root/rel exists without following a
// symbolic link in any component of rel.
func existsNoFollow(root, rel string) bool {
	cur := root
	parts := strings.Split(filepath.Clean(rel), string(filepath.Separator))
	for i, c := range parts {
		cur = filepath.Join(cur, c)
		st, err := lstat(cur)
		if err != nil {
			return false
		}
		if i < len(parts)-1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return false
		}
	}
	return true
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// walk visits the merged view of layers (bottom to top) as one tree.
func (w *walker) walk(layers []string) error {
	if len(layers) == 0 {
		return errors.New("squash: no layers")
	}
	if len(layers) > 65535 {
		return errors.New("squash: too many layers")
	}
	w.roots = layers
	chain := make([]uint16, 0, len(layers)) // topmost first
	for i := len(layers) - 1; i >= 0; i-- {
		st, err := lstat(layers[i])
		if err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return &os.PathError{Op: "squash", Path: layers[i], Err: unix.ENOTDIR}
		}
		chain = append(chain, uint16(i))
	}
	st, err := lstat(layers[chain[0]])
	if err != nil {
		return err
	}
	if err := w.visit(&entry{kind: opDir, rel: "", layer: chain[0], m: metaOf(st)}); err != nil {
		return err
	}
	if err := w.dir("", chain, w.keepWhiteouts); err != nil {
		return err
	}
	return w.left()
}

func (w *walker) left() error {
	if w.leave == nil {
		return nil
	}
	return w.leave()
}

// names returns the union of the names in rel of the layers of chain,
// sorted.
func (w *walker) names(rel string, chain []uint16) ([]string, error) {
	if len(chain) == 1 {
		ns, err := readNames(w.src(chain[0], rel))
		sort.Strings(ns)
		return ns, err
	}
	var all []string
	for _, l := range chain {
		ns, err := readNames(w.src(l, rel))
		if err != nil {
			return nil, err
		}
		all = append(all, ns...)
	}
	sort.Strings(all)
	out := all[:0]
	for i, n := range all {
		if i == 0 || n != all[i-1] {
			out = append(out, n)
		}
	}
	return out, nil
}

// dir visits the children of rel whose contributing layers are chain
// (topmost first). reachesBase says whether a base below the layers may
// still show through at rel.
func (w *walker) dir(rel string, chain []uint16, reachesBase bool) error {
	names, err := w.names(rel, chain)
	if err != nil {
		return err
	}
	for _, name := range names {
		crel := filepath.Join(rel, name)
		var top *unix.Stat_t
		var ti int
		for i, l := range chain {
			st, err := lstat(w.src(l, crel))
			if err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				return err
			}
			top, ti = st, i
			break
		}
		if top == nil {
			continue // vanished while we looked
		}
		layer := chain[ti]
		src := w.src(layer, crel)
		switch {
		case !w.raw && IsWhiteout(top):
			if w.keepWhiteouts && reachesBase && w.baseHas(crel) {
				if err := w.visit(&entry{kind: opWhiteout, rel: crel, layer: layer, m: metaOf(top)}); err != nil {
					return err
				}
			}
		case top.Mode&unix.S_IFMT != unix.S_IFDIR:
			e := entry{kind: opFile, rel: crel, layer: layer, m: metaOf(top), dev: uint64(top.Dev), ino: uint64(top.Ino)}
			if err := w.visit(&e); err != nil {
				return err
			}
		default:
			child := []uint16{layer}
			childReaches := reachesBase
			if !w.raw {
				if IsOpaque(src) {
					childReaches = false
				} else {
					for _, l := range chain[ti+1:] {
						lp := w.src(l, crel)
						st, err := lstat(lp)
						if errors.Is(err, unix.ENOENT) {
							continue
						}
						if err != nil {
							return err
						}
						if st.Mode&unix.S_IFMT != unix.S_IFDIR {
							childReaches = false // whiteout or non-directory stops the merge
							break
						}
						child = append(child, l)
						if IsOpaque(lp) {
							childReaches = false
							break
						}
					}
				}
			}
			if err := w.visit(&entry{kind: opDir, rel: crel, layer: layer, m: metaOf(top),
				opaque: !w.raw && w.keepWhiteouts && reachesBase && !childReaches}); err != nil {
				return err
			}
			if err := w.dir(crel, child, childReaches); err != nil {
				return err
			}
			if err := w.left(); err != nil {
				return err
			}
		}
	}
	return nil
}
