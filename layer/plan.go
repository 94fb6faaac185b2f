package layer

import (
	"errors"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

type opKind uint8

const (
	opDir opKind = iota
	opFile
	opWhiteout
)

// op is one entry of the result tree: where it goes and where it comes
// from.
type op struct {
	kind   opKind
	rel    string // path in the result, "" for its root
	src    string // source path (for a directory: the topmost contributing one)
	opaque bool   // directory: mark opaque in the result
	st     unix.Stat_t
}

// planner merges layer directories into a list of ops, parents first.
type planner struct {
	keepWhiteouts bool // result sits over a base: keep whiteouts/opaque flags
	raw           bool // Copy: whiteouts are plain device nodes, nothing merged
	ops           []op
	files         int64
	bytes         int64
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
	chain := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		st, err := lstat(layers[i])
		if err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return &os.PathError{Op: "squash", Path: layers[i], Err: unix.ENOTDIR}
		}
		chain = append(chain, layers[i])
	}
	st, _ := lstat(chain[0])
	p.ops = append(p.ops, op{kind: opDir, rel: "", src: chain[0], st: *st})
	return p.dir("", chain, p.keepWhiteouts)
}

// dir plans the children of rel whose contributing directories are chain
// (topmost first). reachesBase says whether a base below the layers may
// still show through at rel.
func (p *planner) dir(rel string, chain []string, reachesBase bool) error {
	seen := map[string]bool{}
	var names []string
	for _, d := range chain {
		ns, err := readNames(d)
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
		for i, d := range chain {
			st, err := lstat(filepath.Join(d, name))
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
		src := filepath.Join(chain[ti], name)
		switch {
		case !p.raw && IsWhiteout(top):
			if p.keepWhiteouts && reachesBase {
				p.ops = append(p.ops, op{kind: opWhiteout, rel: crel, src: src, st: *top})
			}
		case top.Mode&unix.S_IFMT != unix.S_IFDIR:
			p.ops = append(p.ops, op{kind: opFile, rel: crel, src: src, st: *top})
			p.files++
			if top.Mode&unix.S_IFMT == unix.S_IFREG {
				p.bytes += top.Size
			}
		default:
			child := []string{src}
			childReaches := reachesBase
			if !p.raw {
				if IsOpaque(src) {
					childReaches = false
				} else {
					for _, d := range chain[ti+1:] {
						lp := filepath.Join(d, name)
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
						child = append(child, lp)
						if IsOpaque(lp) {
							childReaches = false
							break
						}
					}
				}
			}
			p.ops = append(p.ops, op{kind: opDir, rel: crel, src: src, st: *top,
				opaque: !p.raw && p.keepWhiteouts && reachesBase && !childReaches})
			if err := p.dir(crel, child, childReaches); err != nil {
				return err
			}
		}
	}
	return nil
}
