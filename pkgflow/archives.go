package pkgflow

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/internal/atomicfile"
	"github.com/ovpkg/ovpkg/mountset"
)

// Archives never land in or under a transaction layer: the package
// manager downloads into ARCHIVE_DIR (config), by default
// <card>/ovpkg/cache/archives, next to the layers and never inside one,
// or a host directory. With KEEP_ARCHIVES=no (the default) the verb
// deletes afterwards, success or failure, every file it added there; a
// marker file lists what was there before, so that a verb killed
// half-way has its downloads deleted by the next one.

// markerName is the file in the archive directory that lists, while a
// verb runs, the files that were there before it.
const markerName = ".ovpkg-before"

// ErrArchiveDir is a configured ARCHIVE_DIR ovpkg refuses.
var ErrArchiveDir = errors.New("unusable ARCHIVE_DIR")

// archives is the verb's archive directory.
type archives struct {
	dir    string
	keep   bool
	before map[string]bool // files present when the verb began (nil: not taken)
}

// DefaultArchiveDir is where archives go when ARCHIVE_DIR is not set:
// ovpkg/cache/archives on the card, beside ovpkg/layers.
func DefaultArchiveDir(cardMount string) string {
	return filepath.Join(cardMount, card.TopDir, "cache", "archives")
}

// archiveSettings reads ARCHIVE_DIR and KEEP_ARCHIVES from the config.
func archiveSettings(opt mountset.Options) (dir string, keep bool, err error) {
	cfg, err := config.Load(config.Resolve(opt.ConfigPath))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	if dir, err = cfg.AbsPath(config.KeyArchiveDir); err != nil {
		return "", false, err
	}
	keep, err = cfg.YesNo(config.KeyKeepArchives, false)
	return dir, keep, err
}

// openArchives resolves and makes the archive directory: the configured
// one must not lie in an overlaid directory (it would land in the top
// layer) nor in the card's layers; the default one is made on the card
// without following any symbolic link (the card is untrusted input). It
// then deletes what a killed verb left (KEEP_ARCHIVES=no).
func openArchives(opt mountset.Options, rec *mountset.Record, root string) (*archives, error) {
	dir, keep, err := archiveSettings(opt)
	if err != nil {
		return nil, err
	}
	a := &archives{dir: dir, keep: keep}
	if dir == "" {
		a.dir = DefaultArchiveDir(rec.CardMount)
		if err := card.New(rec.CardMount).MkdirAll(a.dir, 0o755); err != nil { // beneath the card's root
			return nil, fmt.Errorf("archive directory on the card: %w", err)
		}
	} else {
		if err := checkArchiveDir(dir, rec, root); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", config.KeyArchiveDir, dir, err)
		}
	}
	// apt wants DIR/partial, and its sandbox user (_apt) must reach it.
	if err := mkdirNoFollow(a.dir, filepath.Join(a.dir, "partial")); err != nil {
		return nil, fmt.Errorf("archive directory: %w", err)
	}
	if err := a.recover(); err != nil {
		return nil, err
	}
	return a, nil
}

// checkArchiveDir refuses an ARCHIVE_DIR inside an overlaid directory
// (writes there go into the card's top layer: the bug this setting
// fixes) or inside the card's layers.
func checkArchiveDir(dir string, rec *mountset.Record, root string) error {
	under := func(p, d string) bool {
		rel, err := filepath.Rel(d, p)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
	}
	for _, o := range rec.Overlays {
		if under(dir, o.Target) {
			return fmt.Errorf("%w: %s=%s lies in %s, which is overlaid: downloads there would land in a transaction's layer; choose a directory outside %s (the default is %s)",
				ErrArchiveDir, config.KeyArchiveDir, dir, o.Target, strings.Join(targets(rec), " "), DefaultArchiveDir(rec.CardMount))
		}
	}
	layers := filepath.Join(rec.CardMount, card.TopDir, "layers")
	if under(dir, layers) {
		return fmt.Errorf("%w: %s=%s lies in the card's layers (%s)", ErrArchiveDir, config.KeyArchiveDir, dir, layers)
	}
	_ = root
	return nil
}

func targets(rec *mountset.Record) []string {
	var t []string
	for _, o := range rec.Overlays {
		t = append(t, o.Target)
	}
	return t
}

// mkdirNoFollow makes dir (below base, which must exist) one component
// at a time, refusing any component that is a symbolic link or not a
// directory.
func mkdirNoFollow(base, dir string) error {
	rel, err := filepath.Rel(base, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s is not below %s", dir, base)
	}
	p := base
	for _, c := range strings.Split(rel, "/") {
		if c == "." || c == "" {
			continue
		}
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link; refusing to follow it (remove it)", p)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
	}
	return nil
}

// files lists the regular files in the archive directory (not partial/,
// the lock or the marker).
func (a *archives) files() (map[string]bool, error) {
	ents, err := os.ReadDir(a.dir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range ents {
		if e.Type().IsRegular() && e.Name() != "lock" && e.Name() != markerName {
			out[e.Name()] = true
		}
	}
	return out, nil
}

// begin notes what is there before the verb downloads anything; with
// KEEP_ARCHIVES=no the list goes into the marker first.
func (a *archives) begin() error {
	var err error
	if a.before, err = a.files(); err != nil {
		return err
	}
	if a.keep {
		return nil
	}
	names := make([]string, 0, len(a.before))
	for n := range a.before {
		names = append(names, n)
	}
	sort.Strings(names)
	return atomicfile.Write(filepath.Join(a.dir, markerName), []byte(strings.Join(names, "\n")+"\n"), 0o644)
}

// cleanup deletes, with KEEP_ARCHIVES=no, every file the verb added (and
// apt's partial downloads), then the marker. It returns what it freed.
func (a *archives) cleanup() (int64, error) {
	if a == nil || a.keep || a.before == nil {
		return 0, nil
	}
	freed, err := a.removeNew(a.before)
	if err == nil {
		err = os.Remove(filepath.Join(a.dir, markerName))
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	a.before = nil
	return freed, err
}

func (a *archives) removeNew(before map[string]bool) (int64, error) {
	now, err := a.files()
	if err != nil {
		return 0, err
	}
	var freed int64
	var errs []error
	for n := range now {
		if before[n] {
			continue
		}
		p := filepath.Join(a.dir, n)
		if fi, err := os.Lstat(p); err == nil {
			freed += fi.Size()
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	part := filepath.Join(a.dir, "partial")
	if ents, err := os.ReadDir(part); err == nil {
		for _, e := range ents {
			if e.Type().IsRegular() {
				os.Remove(filepath.Join(part, e.Name()))
			}
		}
	}
	return freed, errors.Join(errs...)
}

// recover deletes what a verb killed half-way downloaded: the files the
// marker does not list.
func (a *archives) recover() error {
	f, err := os.Open(filepath.Join(a.dir, markerName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	before := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n := strings.TrimSpace(sc.Text()); n != "" {
			before[n] = true
		}
	}
	f.Close()
	if err := sc.Err(); err != nil {
		return err
	}
	if !a.keep {
		if _, err := a.removeNew(before); err != nil {
			return fmt.Errorf("deleting the downloads an interrupted command left in %s: %w", a.dir, err)
		}
	}
	return os.Remove(filepath.Join(a.dir, markerName))
}
