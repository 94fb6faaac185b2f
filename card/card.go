package card

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/beneath"
)

// TopDir is the one directory ovpkg owns on a card.
const TopDir = "ovpkg"

// Format is the layout version this code writes and understands.
const Format = 1

// formatMagic starts the FORMAT file: "ovpkg-card <version>".
const formatMagic = "ovpkg-card"

// FirstLayer is the id Init gives the first layer.
const FirstLayer = "0001"

// Errors Open and the layer functions return (wrapped in *Error).
var (
	ErrNotInitialized = errors.New("card has no ovpkg layout")
	ErrNewerFormat    = errors.New("card layout is newer than this ovpkg understands")
	ErrCorrupt        = errors.New("card layout is damaged")
	ErrBadDir         = errors.New("not a valid overlay directory name")
)

// Error is a layout problem with the path it concerns.
type Error struct {
	Path string
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	s := "card " + e.Path + ": "
	if e.Msg != "" {
		s += e.Msg
	} else {
		s += e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Layout names the paths of the ovpkg layout on a card mounted at Root.
type Layout struct {
	Root string // where the card filesystem is mounted
}

// New returns the layout of a card mounted at root. It touches nothing.
func New(root string) *Layout { return &Layout{Root: filepath.Clean(root)} }

// Top is <card>/ovpkg.
func (l *Layout) Top() string { return filepath.Join(l.Root, TopDir) }

// FormatFile is <card>/ovpkg/FORMAT.
func (l *Layout) FormatFile() string { return filepath.Join(l.Top(), "FORMAT") }

// StackFile is <card>/ovpkg/stack.
func (l *Layout) StackFile() string { return filepath.Join(l.Top(), "stack") }

// LayersDir is <card>/ovpkg/layers.
func (l *Layout) LayersDir() string { return filepath.Join(l.Top(), "layers") }

// LayerDir is <card>/ovpkg/layers/<id>.
func (l *Layout) LayerDir(id string) string { return filepath.Join(l.LayersDir(), id) }

// Tree is the root-like tree of a layer: <card>/ovpkg/layers/<id>/tree.
func (l *Layout) Tree(id string) string { return filepath.Join(l.LayerDir(id), "tree") }

// Upper is a layer's copy of root directory dir ("usr", "etc", ...):
// <card>/ovpkg/layers/<id>/tree/<dir>. For the top layer it is the
// overlay's upperdir; for lower layers, an extra lowerdir.
func (l *Layout) Upper(id, dir string) string { return filepath.Join(l.Tree(id), dir) }

// Work is the overlay workdir of dir in layer id:
// <card>/ovpkg/layers/<id>/work/<escaped dir>. A nested dir such as
// "usr/local" is escaped to one path component ("usr%2Flocal") so that
// workdirs never nest inside each other.
func (l *Layout) Work(id, dir string) string {
	return filepath.Join(l.LayerDir(id), "work", EscapeDir(dir))
}

// EscapeDir turns a relative directory path into one path component.
func EscapeDir(dir string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(dir)
}

// CheckDir validates an overlay directory name: relative, clean, no ".."
// or "." components, not empty.
func CheckDir(dir string) error {
	if dir == "" || dir == "." || strings.HasPrefix(dir, "/") || path.Clean(dir) != dir ||
		dir == ".." || strings.HasPrefix(dir, "../") {
		return &Error{Path: dir, Msg: fmt.Sprintf("%q is not a valid overlay directory (want a relative clean path such as usr or etc)", dir), Err: ErrBadDir}
	}
	return nil
}

// Rel is p relative to the card's root, for resolution beneath it ("."
// for the root). A path that is not below the root is an error.
func (l *Layout) Rel(p string) (string, error) {
	rel, err := filepath.Rel(l.Root, filepath.Clean(p))
	if err != nil || beneath.CheckRel(rel) != nil {
		return "", &Error{Path: p, Msg: "is not below the card's root " + l.Root, Err: ErrCorrupt}
	}
	return rel, nil
}

// Do runs fn with the card's root opened for resolution beneath it
// (internal/beneath: no link followed, no mount crossed).
func (l *Layout) Do(fn func(r *beneath.Root) error) error { return beneath.Do(l.Root, fn) }

// MaxStack and MaxFormat bound the card files read whole.
const (
	MaxStack  = 64 << 10
	MaxFormat = 256
)

// relTop and friends are the layout's paths below the card's root.
const (
	relTop    = TopDir
	relFormat = TopDir + "/FORMAT"
	relStack  = TopDir + "/stack"
	relLayers = TopDir + "/layers"
)

func relLayer(id string) string { return relLayers + "/" + id }
func relTree(id string) string  { return relLayer(id) + "/tree" }
func relUpper(id, dir string) string {
	return relTree(id) + "/" + dir
}
func relWork(id, dir string) string { return relLayer(id) + "/work/" + EscapeDir(dir) }

// MarkFile is the file ovpkg writes into every layer directory it
// creates: "ovpkg-layer <id>\n". Recovery deletes a layer directory the
// stack does not list only when it carries this mark (checked beneath the
// card's root): nothing is deleted that ovpkg cannot show it created.
const MarkFile = "ovpkg-layer"

func markText(id string) string { return "ovpkg-layer " + id + "\n" }

// refused turns a beneath error (a link, a mount point, a way off the
// card) into a card error naming the path.
func refused(path string, err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	msg := err.Error()
	var be *beneath.Error
	if errors.As(err, &be) {
		path, msg = filepath.Join(be.Root, be.Rel), be.Op+": "+be.Err.Error()
		if errors.Is(err, unix.ELOOP) {
			msg = "is or goes through a symbolic link: a card's ovpkg layout never has one, so this card was changed elsewhere; refused, nothing done (check the card on another machine)"
		} else if errors.Is(err, unix.EXDEV) {
			msg = "leads off the card (a mount point or another filesystem): refused, nothing done"
		} else if errors.Is(err, unix.ENOTDIR) {
			msg = "is not a directory"
		}
	}
	return &Error{Path: path, Msg: msg, Err: err}
}

// Init creates the layout on a card that has none: FORMAT, a first layer
// with an upper and a work directory for each of dirs, and the stack.
// Everything is built under a temporary name and renamed into place, so
// an interrupted Init leaves no half layout (a stale temporary is
// removed by the next Init). Init refuses a card that already has one.
// Everything is resolved beneath the card's root.
func Init(root string, dirs []string) (*Layout, error) {
	l := New(root)
	for _, d := range dirs {
		if err := CheckDir(d); err != nil {
			return nil, err
		}
	}
	const tmp = "." + TopDir + ".init"
	err := l.Do(func(r *beneath.Root) error {
		if _, err := r.Lstat(relTop); err == nil {
			return &Error{Path: l.Top(), Msg: "already has an ovpkg layout", Err: fs.ErrExist}
		} else if !errors.Is(err, unix.ENOENT) {
			return err
		}
		err := r.RemoveAll(tmp)
		// Build under tmp (as if it were the top directory), then rename.
		in := func(rel string) string { return tmp + rel[len(relTop):] }
		if err == nil {
			err = r.MkdirAll(in(relLayers), 0o755)
		}
		if err == nil {
			err = newLayerDir(r, in(relLayer(FirstLayer)), FirstLayer)
		}
		for _, d := range dirs {
			if err == nil {
				err = mkdirs(r, in(relUpper(FirstLayer, d)), in(relWork(FirstLayer, d)))
			}
		}
		if err == nil {
			err = r.WriteFile(in(relFormat), []byte(formatMagic+" "+strconv.Itoa(Format)+"\n"), 0o644)
		}
		if err == nil {
			err = r.WriteFile(in(relStack), []byte(FirstLayer+"\n"), 0o644)
		}
		if err == nil {
			err = r.Rename(tmp, relTop)
		}
		if err == nil {
			return r.SyncDir(".")
		}
		if rerr := r.RemoveAll(tmp); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	})
	if err != nil {
		return nil, refused(l.Top(), err)
	}
	return l, nil
}

// newLayerDir creates the layer directory rel with ovpkg's mark in it.
func newLayerDir(r *beneath.Root, rel, id string) error {
	if err := r.Mkdir(rel, 0o755); err != nil {
		return refused(r.Join(rel), err)
	}
	if err := r.WriteFile(rel+"/"+MarkFile, []byte(markText(id)), 0o644); err != nil {
		return refused(r.Join(rel), err)
	}
	return nil
}

// Open checks the layout of a card mounted at root: FORMAT must name a
// version this code understands and the stack must list existing layers.
// A card without the top directory gives ErrNotInitialized; a newer format
// gives ErrNewerFormat with a message that says to upgrade ovpkg. Every
// path is resolved beneath the card's root: a link or a mount point where
// the layout has a directory or file is refused.
func Open(root string) (*Layout, error) {
	l := New(root)
	err := l.Do(func(r *beneath.Root) error {
		if _, err := r.Lstat(relTop); errors.Is(err, unix.ENOENT) {
			return &Error{Path: l.Top(), Msg: "no ovpkg layout on the card", Err: ErrNotInitialized}
		}
		if _, err := r.Dir(relTop); err != nil {
			return refused(l.Top(), err)
		}
		b, err := r.ReadFile(relFormat, MaxFormat)
		if err != nil {
			return corrupt(l.FormatFile(), "cannot read the layout version", err)
		}
		v, err := ParseFormat(b)
		if err != nil {
			return &Error{Path: l.FormatFile(), Msg: err.Error(), Err: ErrCorrupt}
		}
		if v > Format {
			return &Error{Path: l.FormatFile(), Msg: "card layout version " + strconv.Itoa(v) + " is newer than this ovpkg understands (" + strconv.Itoa(Format) + "); upgrade ovpkg before mounting this card", Err: ErrNewerFormat}
		}
		_, err = l.layers(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// errText is err's message without the path (a beneath error's cause).
func errText(err error) string {
	var be *beneath.Error
	if errors.As(err, &be) {
		return be.Err.Error()
	}
	return err.Error()
}

// corrupt is a card file that cannot be read: refused (a link, a mount
// point) or damaged (ErrCorrupt).
func corrupt(path, what string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return refused(path, err)
	}
	return &Error{Path: path, Msg: what + ": " + errText(err), Err: ErrCorrupt}
}

// ParseFormat reads FORMAT's text: "ovpkg-card <version>".
func ParseFormat(b []byte) (int, error) {
	f := strings.Fields(string(b))
	if len(b) > MaxFormat || len(f) != 2 || f[0] != formatMagic || len(f[1]) > 6 {
		return 0, errors.New("unrecognised layout version " + strconv.Quote(printable(string(b))) + " (want \"" + formatMagic + " " + strconv.Itoa(Format) + "\")")
	}
	v, err := strconv.Atoi(f[1])
	if err != nil || v < 1 {
		return 0, errors.New("bad layout version " + strconv.Quote(f[1]))
	}
	return v, nil
}

// printable shortens s for a one-line message.
func printable(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// Layers returns the layer ids from the stack file, bottom to top. Every
// id must name an existing layer directory (reached beneath the card's
// root, with a real tree directory in it).
func (l *Layout) Layers() (ids []string, err error) {
	err = l.Do(func(r *beneath.Root) error {
		ids, err = l.layers(r)
		return err
	})
	return ids, err
}

func (l *Layout) layers(r *beneath.Root) ([]string, error) {
	b, err := r.ReadFile(relStack, MaxStack)
	if err != nil {
		return nil, corrupt(l.StackFile(), "cannot read the layer stack", err)
	}
	ids, err := ParseStackStrict(b)
	if err != nil {
		return nil, &Error{Path: l.StackFile(), Msg: err.Error(), Err: ErrCorrupt}
	}
	if _, err := r.Dir(relLayers); err != nil {
		return nil, refused(l.LayersDir(), err)
	}
	for _, id := range ids {
		if err := checkLayer(r, id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// checkLayer checks that layer id's directory and tree are real
// directories beneath the card's root, and its work directory too when
// present.
func checkLayer(r *beneath.Root, id string) error {
	for _, rel := range []string{relLayer(id), relTree(id), relLayer(id) + "/work"} {
		_, err := r.Dir(rel)
		if errors.Is(err, unix.ENOENT) && rel[len(rel)-5:] == "/work" {
			continue // made when needed
		}
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return &Error{Path: r.Join(relTree(id)), Msg: "layer " + id + " named in the stack is missing", Err: ErrCorrupt}
		}
		if err != nil {
			return refused(r.Join(rel), err)
		}
	}
	return nil
}

// TopLayer returns the id of the top (writable) layer.
func (l *Layout) TopLayer() (string, error) {
	ids, err := l.Layers()
	if err != nil {
		return "", err
	}
	return ids[len(ids)-1], nil
}

// ParseStack reads the stack file's text: one id a line, blank lines and
// #-comments ignored. It does not validate (ParseStackStrict does).
func ParseStack(s string) []string {
	var ids []string
	for _, ln := range strings.Split(s, "\n") {
		ln = strings.TrimSpace(ln)
		if ln == "" || strings.HasPrefix(ln, "#") {
			continue
		}
		ids = append(ids, ln)
	}
	return ids
}

// MaxLayers bounds the stack (the overlay's lowerdir count is bounded
// too: 500 in the kernel).
const MaxLayers = 500

// ParseStackStrict is ParseStack that validates: at least one id, each a
// valid layer id (CheckID), none repeated, at most MaxLayers.
func ParseStackStrict(b []byte) ([]string, error) {
	ids := ParseStack(string(b))
	if len(b) > MaxStack || len(ids) == 0 || len(ids) > MaxLayers {
		return nil, errors.New("the layer stack is empty or too large (1 to " + strconv.Itoa(MaxLayers) + " layers)")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if checkID(id) != nil || seen[id] {
			return nil, errors.New("bad or repeated layer id " + strconv.Quote(printable(id)))
		}
		seen[id] = true
	}
	return ids, nil
}

// CheckID validates a layer id read from a card file: 1-64 characters of
// [0-9A-Za-z._-], not "." or "..".
func CheckID(id string) error { return checkID(id) }

func checkID(id string) error {
	if id == "" || len(id) > 64 || id == "." || id == ".." {
		return ErrCorrupt
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.') {
			return ErrCorrupt
		}
	}
	return nil
}

// NextID returns an id greater than every id in ids (decimal, zero-padded
// to four digits), for a new layer.
func NextID(ids []string) string {
	max := 0
	for _, id := range ids {
		if n, err := strconv.Atoi(id); err == nil && n > max {
			max = n
		}
	}
	return fmt.Sprintf("%04d", max+1)
}

// WriteStack replaces the stack file atomically with ids (bottom to top).
// Each id must name an existing layer.
func (l *Layout) WriteStack(ids []string) error {
	if len(ids) == 0 {
		return &Error{Path: l.StackFile(), Msg: "refusing to write an empty layer stack", Err: ErrCorrupt}
	}
	return l.Do(func(r *beneath.Root) error {
		for _, id := range ids {
			if checkID(id) != nil {
				return &Error{Path: l.StackFile(), Msg: "bad layer id " + strconv.Quote(id), Err: ErrCorrupt}
			}
			if err := checkLayer(r, id); err != nil {
				return err
			}
		}
		if err := r.WriteFile(relStack, []byte(strings.Join(ids, "\n")+"\n"), 0o644); err != nil {
			return refused(l.StackFile(), err)
		}
		return nil
	})
}

// NewLayerDir creates the empty directory of layer id with ovpkg's mark
// (MarkFile) in it, beneath the card's root.
func (l *Layout) NewLayerDir(id string) error {
	if err := checkID(id); err != nil {
		return &Error{Path: id, Msg: fmt.Sprintf("bad layer id %q", id), Err: ErrCorrupt}
	}
	return l.Do(func(r *beneath.Root) error { return newLayerDir(r, relLayer(id), id) })
}

// AddLayer creates an empty layer (tree and work directories for dirs)
// that is not yet in the stack; WriteStack makes it visible.
func (l *Layout) AddLayer(id string, dirs []string) error {
	if err := l.NewLayerDir(id); err != nil {
		return err
	}
	return l.EnsureDirs(id, dirs)
}

// EnsureDirs creates the upper and work directories of dirs in layer id
// where missing (a directory added to OVERLAY_DIRS after the card was
// made), beneath the card's root. A non-directory, link or mount point in
// the way is an error.
func (l *Layout) EnsureDirs(id string, dirs []string) error {
	if err := checkID(id); err != nil {
		return &Error{Path: id, Msg: fmt.Sprintf("bad layer id %q", id), Err: ErrCorrupt}
	}
	return l.Do(func(r *beneath.Root) error {
		if err := checkLayer(r, id); err != nil && !errors.Is(err, ErrCorrupt) {
			return err
		}
		for _, d := range dirs {
			if err := CheckDir(d); err != nil {
				return err
			}
			if err := mkdirs(r, relUpper(id, d), relWork(id, d)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Spec is where one overlaid directory's layers live on the card.
type Spec struct {
	Dir    string   // "usr"
	Lowers []string // trees of the layers below the top, topmost first (may be empty)
	Upper  string   // top layer's tree/<dir>
	Work   string   // top layer's work/<dir>
}

// Specs returns, for each of dirs, the card paths of its overlay: the top
// layer's upper and work directories and the lower layers' copies, topmost
// first. The root's own directory is not included (it is the lowest
// lowerdir, added by the caller). Lower layers that lack dir are skipped.
// Every path is checked by OverlayDirs.
func (l *Layout) Specs(dirs []string) ([]Spec, error) {
	ids, err := l.Layers()
	if err != nil {
		return nil, err
	}
	var out []Spec
	for _, d := range dirs {
		upper, work, lowers, err := l.OverlayDirs(ids, d)
		if err != nil {
			return nil, err
		}
		out = append(out, Spec{Dir: d, Upper: upper, Work: work, Lowers: lowers})
	}
	return out, nil
}

// OverlayDirs returns the card directories of dir's overlay over layers
// ids (bottom to top): the top layer's upper and work directories and the lower layers' copies that exist, topmost first.
// These paths go to the kernel (overlayfs resolves them by name), so each
// is first opened beneath the card's root (no link, no mount point on
// the way, not even the last component) and then compared by device and
// inode with what its name resolves to: the kernel gets exactly the
// directory checked.
func (l *Layout) OverlayDirs(ids []string, dir string) (upper, work string, lowers []string, err error) {
	if err := CheckDir(dir); err != nil || len(ids) == 0 {
		return "", "", nil, &Error{Path: l.StackFile(), Msg: "no layers or a bad directory", Err: ErrCorrupt}
	}
	top := ids[len(ids)-1]
	err = l.Do(func(r *beneath.Root) error {
		for i := len(ids) - 1; i >= -1; i-- {
			rel := relWork(top, dir) // i == -1
			if i >= 0 {
				rel = relUpper(ids[i], dir)
			}
			// A lower layer without dir (missing, or a whiteout there) is
			// skipped; a missing upper or work dir is the kernel's to refuse.
			err := r.SameDir(rel, r.Join(rel))
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) && i >= 0 && i < len(ids)-1 {
				continue
			}
			if err != nil {
				return refused(r.Join(rel), err)
			}
			if i >= 0 && i < len(ids)-1 {
				lowers = append(lowers, r.Join(rel))
			}
		}
		return nil
	})
	return l.Upper(top, dir), l.Work(top, dir), lowers, err
}

// LayerDirs lists the directories in <card>/ovpkg/layers (sorted),
// skipping names that start with a dot and anything that is not a real
// directory (a link there is never a layer).
func (l *Layout) LayerDirs() (ids []string, err error) {
	err = l.Do(func(r *beneath.Root) error {
		ents, err := r.ReadDir(relLayers)
		if err != nil {
			return refused(l.LayersDir(), err)
		}
		for _, e := range ents {
			if e.IsDir() && !strings.HasPrefix(e.Name, ".") {
				ids = append(ids, e.Name)
			}
		}
		return nil
	})
	sort.Strings(ids)
	return ids, err
}

// ErrNotMarked is a layer directory without ovpkg's mark: never deleted.
var ErrNotMarked = errors.New("does not carry ovpkg's layer mark")

// Marked reports whether layer id's directory carries ovpkg's mark for
// that id (read beneath the card's root).
func (l *Layout) Marked(id string) (bool, error) {
	b, err := l.ReadFile(l.LayerDir(id)+"/"+MarkFile, 256)
	if errors.Is(err, unix.ENOENT) || checkID(id) != nil {
		return false, nil
	}
	return err == nil && string(b) == markText(id), err
}

// RemoveLayer deletes layer id's directory, beneath the card's root:
// nothing below it is followed (links are removed as links) and nothing
// on another filesystem or behind a mount point is entered. With
// needMark the directory must carry ovpkg's mark (recovery of a layer
// the stack does not list) or be empty, else it is kept and ErrNotMarked
// returned.
func (l *Layout) RemoveLayer(id string, needMark bool) error {
	if checkID(id) != nil {
		return &Error{Path: l.LayerDir(id), Msg: "bad layer id: not deleted", Err: ErrCorrupt}
	}
	return l.Do(func(r *beneath.Root) error {
		if needMark {
			ok, err := l.Marked(id)
			if err != nil {
				return refused(l.LayerDir(id), err)
			}
			if ents, _ := r.ReadDir(relLayer(id)); !ok && len(ents) > 0 {
				return &Error{Path: l.LayerDir(id), Msg: "does not carry ovpkg's mark (" + MarkFile + "), so ovpkg did not create it: kept, not deleted (remove it by hand if it is garbage)", Err: ErrNotMarked}
			}
		}
		err := r.RemoveAll(relLayer(id))
		if err == nil {
			err = r.SyncDir(relLayers)
		}
		if err != nil {
			return refused(l.LayerDir(id), err)
		}
		return nil
	})
}

// ReadFile reads the regular file p (an absolute path below the card's
// root) beneath the root, at most max bytes.
func (l *Layout) ReadFile(p string, max int64) (b []byte, err error) {
	rel, err := l.Rel(p)
	if err != nil {
		return nil, err
	}
	err = l.Do(func(r *beneath.Root) error {
		b, err = r.ReadFile(rel, max)
		return err
	})
	return b, err
}

// WriteFile replaces the file p (below the card's root) atomically,
// beneath the root.
func (l *Layout) WriteFile(p string, data []byte, perm os.FileMode) error {
	rel, err := l.Rel(p)
	if err != nil {
		return err
	}
	return l.Do(func(r *beneath.Root) error { return r.WriteFile(rel, data, perm) })
}

// MkdirAll creates the directory p (below the card's root) and its
// parents beneath the root.
func (l *Layout) MkdirAll(p string, perm os.FileMode) error {
	rel, err := l.Rel(p)
	if err != nil {
		return err
	}
	return l.Do(func(r *beneath.Root) error { return r.MkdirAll(rel, perm) })
}

// Remove removes the file p (below the card's root) beneath the root; a
// missing file is not an error.
func (l *Layout) Remove(p string) error {
	rel, err := l.Rel(p)
	if err != nil {
		return err
	}
	return l.Do(func(r *beneath.Root) error {
		if err := r.Remove(rel); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		return nil
	})
}

// RemoveAll removes p (below the card's root) and everything in it,
// beneath the root: links are removed as links, nothing on another
// filesystem or behind a mount point is entered (refused). A missing p
// is not an error.
func (l *Layout) RemoveAll(p string) error {
	rel, err := l.Rel(p)
	if err != nil {
		return err
	}
	if rel == "." {
		return &Error{Path: p, Msg: "refusing to remove the card's root", Err: ErrCorrupt}
	}
	return l.Do(func(r *beneath.Root) error {
		if err := r.RemoveAll(rel); err != nil {
			return refused(p, err)
		}
		return nil
	})
}

// Lstat stats p (below the card's root) beneath the root without
// following its last component.
func (l *Layout) Lstat(p string) (st *unix.Stat_t, err error) {
	rel, err := l.Rel(p)
	if err != nil {
		return nil, err
	}
	err = l.Do(func(r *beneath.Root) error {
		st, err = r.Lstat(rel)
		return err
	})
	return st, err
}

// Append appends data to the file p (below the card's root) and fsyncs
// it, beneath the root.
func (l *Layout) Append(p string, data []byte, perm os.FileMode) error {
	rel, err := l.Rel(p)
	if err != nil {
		return err
	}
	return l.Do(func(r *beneath.Root) error { return r.Append(rel, data, perm) })
}

// SyncDir fsyncs the directory p (below the card's root), beneath it.
func (l *Layout) SyncDir(p string) error {
	rel, err := l.Rel(p)
	if err != nil {
		return err
	}
	return l.Do(func(r *beneath.Root) error { return r.SyncDir(rel) })
}

func mkdirs(r *beneath.Root, rels ...string) error {
	for _, rel := range rels {
		if err := r.MkdirAll(rel, 0o755); err != nil {
			return refused(r.Join(rel), err)
		}
	}
	return nil
}
