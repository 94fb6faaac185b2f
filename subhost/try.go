package subhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/layer"
	"github.com/ovpkg/ovpkg/mountset"
)

// TryName is the name of the throwaway subhost of `ovpkg try`.
const TryName = "ovpkg-try"

// TryDir is the try sandbox on the card: <card>/ovpkg/try, holding the
// subhost's root (its upper: what the try changed), work and live
// directories, its config and try.json. On the card's filesystem, so that
// commit hard-links the upper into a layer instead of copying it.
func TryDir(cardMount string) string { return filepath.Join(cardMount, card.TopDir, "try") }

// TryState is try.json: what the try was made over and what it did.
type TryState struct {
	Stack    []string  `json:"stack"` // the card's committed layers when the try began
	Dirs     []string  `json:"dirs"`  // the overlaid directories
	Commands []string  `json:"commands"`
	Packages []string  `json:"packages"`
	Started  time.Time `json:"started"`
}

// ErrNoTry is returned when there is no try to use, commit or discard.
var ErrNoTry = errors.New("no try in progress (start one with ovpkg try install PKG...)")

// Try is the try sandbox of a mounted card.
type Try struct {
	Dir    string
	RunDir string
	Rec    *mountset.Record
	Out    io.Writer
	Exe    string // for tests; "" = /proc/self/exe
	Config string // ovpkg's --config, passed to the try subhost's supervisor
}

func (t *Try) statePath() string { return filepath.Join(t.Dir, "try.json") }
func (t *Try) conf() string      { return filepath.Join(t.Dir, TryName+".conf") }

// Upper is the try's upper directory (what it changed).
func (t *Try) Upper() string { return filepath.Join(t.Dir, "root") }

// State reads try.json (ErrNoTry when there is none).
func (t *Try) State() (*TryState, error) {
	b, err := t.layout().ReadFile(t.statePath(), 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoTry
	}
	if err != nil {
		return nil, err
	}
	var s TryState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s is damaged: %w (ovpkg try discard drops the try)", t.statePath(), err)
	}
	return &s, nil
}

func (t *Try) writeState(s *TryState) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return t.layout().WriteFile(t.statePath(), append(b, '\n'), 0o644)
}

// layout is the card the sandbox lives on: everything in it is resolved
// beneath the card's root (no link followed, no mount crossed).
func (t *Try) layout() *card.Layout { return card.New(t.Rec.CardMount) }

// Ensure makes the sandbox (first use, stack recorded) and starts its
// subhost over the card's merged root when it is not running. The
// archive directory is shared into it at the same path.
func (t *Try) Ensure(stack []string, archiveDir string) (*TryState, error) {
	st, err := t.State()
	if errors.Is(err, ErrNoTry) {
		for _, d := range []string{t.Dir, t.Upper(), filepath.Join(t.Dir, "work"), filepath.Join(t.Dir, "live")} {
			if err := t.layout().MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
		st = &TryState{Stack: stack, Dirs: t.Rec.Dirs, Started: time.Now().UTC()}
		if err := t.writeState(st); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if !slices.Equal(st.Stack, stack) {
		return nil, fmt.Errorf("the card's layers changed since this try began (%v, now %v): ovpkg try discard, then try again", st.Stack, stack)
	}
	if _, err := Running(t.RunDir, TryName); err == nil {
		return st, nil
	}
	conf := fmt.Sprintf("# written by ovpkg try\nNAME=%s\nBASE=.\nSTART=none\nLOG=%s\nSHARE=%s\n",
		TryName, filepath.Join(Dir(t.RunDir), TryName+".log"), archiveDir)
	if err := os.MkdirAll(Dir(t.RunDir), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(archiveDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(t.conf(), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	exe := t.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	argv := []string{"ovpkg", "subhost", "start", "--foreground", "--card"}
	if t.Config != "" {
		argv = append(argv, "--config", t.Config)
	}
	argv = append(argv, t.conf())
	if _, err := Detach(exe, argv, filepath.Join(Dir(t.RunDir), TryName+".log"), 5*time.Minute); err != nil {
		return nil, fmt.Errorf("starting the try subhost: %w", err)
	}
	return st, nil
}

// Run runs argv in the try subhost and returns its exit code.
func (t *Try) Run(argv, env []string) (int, error) {
	if _, err := t.State(); err != nil {
		return 0, err
	}
	if _, err := Running(t.RunDir, TryName); err != nil {
		return 0, fmt.Errorf("the try subhost is not running (ovpkg try install starts it again): %w", err)
	}
	return Enter(t.RunDir, TryName, argv, env)
}

// Note records a command the try ran and the packages it named.
func (t *Try) Note(command string, pkgs []string) error {
	st, err := t.State()
	if err != nil {
		return err
	}
	st.Commands = append(st.Commands, command)
	for _, p := range pkgs {
		if !slices.Contains(st.Packages, p) {
			st.Packages = append(st.Packages, p)
		}
	}
	return t.writeState(st)
}

// Stop stops the try subhost (not an error when it is not running).
func (t *Try) Stop() error {
	st, err := ReadState(t.RunDir, TryName)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !needsCleanup(st) && !alive(t.RunDir, TryName) {
		return nil
	}
	_, err = Stop(TryName, StopOptions{RunDir: t.RunDir, Out: t.Out})
	return err
}

// Changes lists, per overlaid directory, whether the try changed it, and
// the top-level paths outside them it changed (dropped at commit).
func (t *Try) Changes(dirs []string) (in []string, outside []string) {
	for _, d := range dirs {
		if !emptyTree(filepath.Join(t.Upper(), d)) {
			in = append(in, d)
		}
	}
	filepath.WalkDir(t.Upper(), func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == t.Upper() {
			return nil
		}
		rel, _ := filepath.Rel(t.Upper(), p)
		for _, d := range dirs {
			if rel == d || strings.HasPrefix(rel, d+"/") {
				return filepath.SkipDir
			}
			if strings.HasPrefix(d, rel+"/") {
				return nil // a parent of an overlaid directory
			}
		}
		if !e.IsDir() || !emptyTree(p) {
			outside = append(outside, "/"+rel)
		}
		if e.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	return in, outside
}

// Fill hard-links the try's upper of each overlaid directory into a new
// layer's tree (same filesystem: no data is copied), for
// txn.Card.BeginFilled. The try itself is left as it is until the
// transaction is committed: a transaction that fails, is aborted or is
// cut short by a crash or a pulled card is undone by deleting its layer,
// which then takes only the links, and the try can be committed again or
// discarded. Directories are made anew with the owner, mode, times and
// every extended attribute of the try's (overlayfs's opaque marks
// included); whiteouts, symbolic links and files are linked.
func (t *Try) Fill(dirs []string) func(tree string) error {
	return func(tree string) error {
		for _, d := range dirs {
			src := filepath.Join(t.Upper(), d)
			if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			dst := filepath.Join(tree, d)
			if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("try commit: %w", err)
			}
			if err := linkTree(src, dst); err != nil {
				return fmt.Errorf("try commit: linking %s into the new layer: %w", src, err)
			}
		}
		return nil
	}
}

// linkTree recreates the directories of src at dst and hard-links
// everything else; directory metadata is set last, deepest first.
func linkTree(src, dst string) error {
	var dirs []string
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if e.IsDir() {
			dirs = append(dirs, rel)
			return os.Mkdir(to, 0o700)
		}
		return os.Link(p, to) // link(2) never follows a symbolic link
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := copyDirMeta(filepath.Join(src, dirs[i]), filepath.Join(dst, dirs[i])); err != nil {
			return err
		}
	}
	return nil
}

func copyDirMeta(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: src, Err: err}
	}
	xa, err := layer.Xattrs(src)
	if err != nil {
		return err
	}
	for n, v := range xa {
		if err := unix.Lsetxattr(dst, n, v, 0); err != nil {
			return &fs.PathError{Op: "setxattr " + n, Path: dst, Err: err}
		}
	}
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := os.Chmod(dst, fs.FileMode(st.Mode&0o777)|modeBits(st.Mode)); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

func modeBits(m uint32) fs.FileMode {
	var f fs.FileMode
	if m&unix.S_ISUID != 0 {
		f |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		f |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		f |= fs.ModeSticky
	}
	return f
}

// Remove deletes the sandbox (after Stop: nothing is mounted on it any
// more, the subhost's mounts lived in its own namespace).
func (t *Try) Remove() error {
	for _, st := range []string{"live"} {
		var err error
		if err = unmountedDir(filepath.Join(t.Dir, st)); err != nil {
			return err
		}
	}
	return t.layout().RemoveAll(t.Dir)
}

// unmountedDir refuses a directory that is a mount point here.
func unmountedDir(p string) error {
	var a, b = statDev(p), statDev(filepath.Dir(p))
	if a != 0 && b != 0 && a != b {
		return fmt.Errorf("%s is a mount point; not deleting the try", p)
	}
	return nil
}

func emptyTree(dir string) bool {
	empty := true
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() {
			empty = false
			return filepath.SkipAll
		}
		return nil
	})
	return empty
}
