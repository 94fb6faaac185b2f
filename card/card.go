package card

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ovpkg/ovpkg/internal/atomicfile"
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

// Init creates the layout on a card that has none: FORMAT, a first layer
// with an upper and a work directory for each of dirs, and the stack.
// Everything is built under a temporary name and renamed into place, so
// an interrupted Init leaves no half layout (a stale temporary is
// removed by the next Init). Init refuses a card that already has one.
func Init(root string, dirs []string) (_ *Layout, retErr error) {
	l := New(root)
	if _, err := os.Lstat(l.Top()); err == nil {
		return nil, &Error{Path: l.Top(), Msg: "already has an ovpkg layout", Err: fs.ErrExist}
	}
	for _, d := range dirs {
		if err := CheckDir(d); err != nil {
			return nil, err
		}
	}
	tmp := filepath.Join(l.Root, "."+TopDir+".init")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, &Error{Path: tmp, Err: err}
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(tmp)
		}
	}()
	tl := &Layout{Root: l.Root}
	// Build the tree under tmp by pretending tmp is the top directory.
	build := func(p string) string { return filepath.Join(tmp, strings.TrimPrefix(p, l.Top())) }
	if err := os.MkdirAll(build(tl.LayerDir(FirstLayer)), 0o755); err != nil {
		return nil, &Error{Path: tmp, Msg: "cannot create the layout (is the card writable?)", Err: err}
	}
	for _, d := range dirs {
		if err := mkdirs(build(tl.Upper(FirstLayer, d)), build(tl.Work(FirstLayer, d))); err != nil {
			return nil, err
		}
	}
	if err := writeAtomic(build(l.FormatFile()), fmt.Sprintf("%s %d\n", formatMagic, Format)); err != nil {
		return nil, err
	}
	if err := writeAtomic(build(l.StackFile()), FirstLayer+"\n"); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, l.Top()); err != nil {
		return nil, &Error{Path: l.Top(), Err: err}
	}
	syncDir(l.Root)
	return l, nil
}

// Open checks the layout of a card mounted at root: FORMAT must name a
// version this code understands and the stack must list existing layers.
// A card without the top directory gives ErrNotInitialized; a newer format
// gives ErrNewerFormat with a message that says to upgrade ovpkg.
func Open(root string) (*Layout, error) {
	l := New(root)
	st, err := os.Lstat(l.Top())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &Error{Path: l.Top(), Msg: "no ovpkg layout on the card", Err: ErrNotInitialized}
	}
	if err != nil {
		return nil, &Error{Path: l.Top(), Err: err}
	}
	if !st.IsDir() {
		return nil, &Error{Path: l.Top(), Msg: "is not a directory", Err: ErrCorrupt}
	}
	v, err := readFormat(l.FormatFile())
	if err != nil {
		return nil, err
	}
	if v > Format {
		return nil, &Error{Path: l.FormatFile(), Msg: fmt.Sprintf("card layout version %d is newer than this ovpkg understands (%d); upgrade ovpkg before mounting this card", v, Format), Err: ErrNewerFormat}
	}
	if _, err := l.Layers(); err != nil {
		return nil, err
	}
	return l, nil
}

func readFormat(p string) (int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, &Error{Path: p, Msg: "cannot read the layout version: " + err.Error(), Err: ErrCorrupt}
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] != formatMagic {
		return 0, &Error{Path: p, Msg: fmt.Sprintf("unrecognised layout version %q (want %q)", strings.TrimSpace(string(b)), fmt.Sprintf("%s %d", formatMagic, Format)), Err: ErrCorrupt}
	}
	v, err := strconv.Atoi(f[1])
	if err != nil || v < 1 {
		return 0, &Error{Path: p, Msg: fmt.Sprintf("bad layout version %q", f[1]), Err: ErrCorrupt}
	}
	return v, nil
}

// Layers returns the layer ids from the stack file, bottom to top. Every
// id must name an existing layer directory.
func (l *Layout) Layers() ([]string, error) {
	b, err := os.ReadFile(l.StackFile())
	if err != nil {
		return nil, &Error{Path: l.StackFile(), Msg: "cannot read the layer stack: " + err.Error(), Err: ErrCorrupt}
	}
	ids := ParseStack(string(b))
	if len(ids) == 0 {
		return nil, &Error{Path: l.StackFile(), Msg: "the layer stack is empty", Err: ErrCorrupt}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if err := checkID(id); err != nil || seen[id] {
			return nil, &Error{Path: l.StackFile(), Msg: fmt.Sprintf("bad or repeated layer id %q", id), Err: ErrCorrupt}
		}
		seen[id] = true
		if st, err := os.Stat(l.Tree(id)); err != nil || !st.IsDir() {
			return nil, &Error{Path: l.Tree(id), Msg: fmt.Sprintf("layer %s named in the stack is missing", id), Err: ErrCorrupt}
		}
	}
	return ids, nil
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
// #-comments ignored.
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

func checkID(id string) error {
	if id == "" || len(id) > 64 {
		return ErrCorrupt
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.') || id == "." || id == ".." {
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
	for _, id := range ids {
		if err := checkID(id); err != nil {
			return &Error{Path: l.StackFile(), Msg: fmt.Sprintf("bad layer id %q", id), Err: ErrCorrupt}
		}
		if st, err := os.Stat(l.Tree(id)); err != nil || !st.IsDir() {
			return &Error{Path: l.Tree(id), Msg: fmt.Sprintf("layer %s does not exist", id), Err: ErrCorrupt}
		}
	}
	return writeAtomic(l.StackFile(), strings.Join(ids, "\n")+"\n")
}

// AddLayer creates an empty layer (tree and work directories for dirs)
// that is not yet in the stack; WriteStack makes it visible.
func (l *Layout) AddLayer(id string, dirs []string) error {
	if err := checkID(id); err != nil {
		return &Error{Path: id, Msg: fmt.Sprintf("bad layer id %q", id), Err: ErrCorrupt}
	}
	if err := os.Mkdir(l.LayerDir(id), 0o755); err != nil {
		return &Error{Path: l.LayerDir(id), Err: err}
	}
	return l.EnsureDirs(id, dirs)
}

// EnsureDirs creates the upper and work directories of dirs in layer id
// where missing (a directory added to OVERLAY_DIRS after the card was
// made). A non-directory in the way is an error.
func (l *Layout) EnsureDirs(id string, dirs []string) error {
	for _, d := range dirs {
		if err := CheckDir(d); err != nil {
			return err
		}
		if err := mkdirs(l.Upper(id, d), l.Work(id, d)); err != nil {
			return err
		}
	}
	return nil
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
func (l *Layout) Specs(dirs []string) ([]Spec, error) {
	ids, err := l.Layers()
	if err != nil {
		return nil, err
	}
	top := ids[len(ids)-1]
	var out []Spec
	for _, d := range dirs {
		if err := CheckDir(d); err != nil {
			return nil, err
		}
		s := Spec{Dir: d, Upper: l.Upper(top, d), Work: l.Work(top, d)}
		for i := len(ids) - 2; i >= 0; i-- {
			p := l.Upper(ids[i], d)
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				s.Lowers = append(s.Lowers, p)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func mkdirs(paths ...string) error {
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return &Error{Path: p, Msg: "cannot create directory: " + err.Error(), Err: err}
		}
		st, err := os.Stat(p)
		if err != nil || !st.IsDir() {
			return &Error{Path: p, Msg: "is not a directory", Err: ErrCorrupt}
		}
	}
	return nil
}

// writeAtomic replaces p with data (internal/atomicfile), as a card.Error.
func writeAtomic(p, data string) error {
	if err := atomicfile.Write(p, []byte(data), 0o644); err != nil {
		return &Error{Path: p, Msg: err.Error(), Err: err}
	}
	return nil
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
