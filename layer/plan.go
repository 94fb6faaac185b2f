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

// op is one entry of the result tree: its path and the layer it comes
// from (the same relative path in that layer). Kept small: a plan holds
// one per entry.
type op struct {
	rel    string // path in the result, "" for its root
	m      meta
	link   int32 // non-directory: index of an earlier op of the same inode (hard link), or -1
	layer  uint16
	kind   opKind
	opaque bool // directory: mark opaque in the result
}

// planner merges layer directories into a list of ops, parents first.
type planner struct {
	keepWhiteouts bool // result sits over a base: keep whiteouts/opaque flags
	raw           bool // Copy: whiteouts are plain device nodes, nothing merged
	base          string
	roots         []string
	ops           []op
	firsts        map[inodeKey]int32 // hard-linked inodes seen: first op
	files         int64
	bytes         int64
}

func (p *planner) src(o *op) string { return filepath.Join(p.roots[o.layer], o.rel) }

// baseHas reports whether the base (if known) has an entry at rel, with
// every parent a real directory (a symbolic link on the way is a
// non-directory to overlayfs: nothing below it shows).
func (p *planner) baseHas(rel string) bool {
	if p.base == "" {
		return true
	}
	return existsNoFollow(p.base, rel)
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

// plan returns the ops that build the merged view of layers (bottom to
// top) as one tree.
func (p *planner) plan(layers []string) error {
	if len(layers) == 0 {
		return errors.New("squash: no layers")
	}
	if len(layers) > 65535 {
		return errors.New("squash: too many layers")
	}
	p.roots = layers
	p.firsts = map[inodeKey]int32{}
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
	st, _ := lstat(layers[chain[0]])
	p.ops = append(p.ops, op{kind: opDir, rel: "", layer: chain[0], m: metaOf(st), link: -1})
	return p.dir("", chain, p.keepWhiteouts)
}

// dir plans the children of rel whose contributing layers are chain
// (topmost first). reachesBase says whether a base below the layers may
// still show through at rel.
func (p *planner) dir(rel string, chain []uint16, reachesBase bool) error {
	seen := map[string]bool{}
	var names []string
	for _, l := range chain {
		ns, err := readNames(filepath.Join(p.roots[l], rel))
		if err != nil {
			return err
		}
		for _, n := range ns {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	for _, name := range names {
		crel := filepath.Join(rel, name)
		var top *unix.Stat_t
		var ti int
		for i, l := range chain {
			st, err := lstat(filepath.Join(p.roots[l], crel))
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
		src := filepath.Join(p.roots[layer], crel)
		switch {
		case !p.raw && IsWhiteout(top):
			if p.keepWhiteouts && reachesBase && p.baseHas(crel) {
				p.ops = append(p.ops, op{kind: opWhiteout, rel: crel, layer: layer, m: metaOf(top), link: -1})
			}
		case top.Mode&unix.S_IFMT != unix.S_IFDIR:
			o := op{kind: opFile, rel: crel, layer: layer, m: metaOf(top), link: -1}
			if top.Nlink > 1 {
				k := inodeKey{uint64(top.Dev), uint64(top.Ino)}
				if first, ok := p.firsts[k]; ok {
					o.link = first
				} else {
					p.firsts[k] = int32(len(p.ops))
				}
			}
			p.ops = append(p.ops, o)
			p.files++
			if top.Mode&unix.S_IFMT == unix.S_IFREG {
				p.bytes += top.Size
			}
		default:
			child := []uint16{layer}
			childReaches := reachesBase
			if !p.raw {
				if IsOpaque(src) {
					childReaches = false
				} else {
					for _, l := range chain[ti+1:] {
						lp := filepath.Join(p.roots[l], crel)
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
			p.ops = append(p.ops, op{kind: opDir, rel: crel, layer: layer, m: metaOf(top), link: -1,
				opaque: !p.raw && p.keepWhiteouts && reachesBase && !childReaches})
			if err := p.dir(crel, child, childReaches); err != nil {
				return err
			}
		}
	}
	return nil
}
