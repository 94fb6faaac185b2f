package txn

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/beneath"
	"github.com/ovpkg/ovpkg/layer"
	"github.com/ovpkg/ovpkg/merge"
)

// Watched are the base files whose drift matters when the card shadows
// them (paths relative to the root). Conffiles the base's package
// database lists are watched too.
var Watched = []string{
	"var/lib/dpkg/status", "usr/lib/opkg/status", "var/lib/opkg/status",
	"lib/apk/db/installed", "etc/apk/world",
	"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow",
}

func (c *Card) baseDir() string  { return filepath.Join(c.L.Top(), "base") }
func (c *Card) sumsPath() string { return filepath.Join(c.baseDir(), "sums") }
func (c *Card) baseCopy(rel string) string {
	return filepath.Join(c.baseDir(), "files", rel)
}

// MaxSums bounds base/sums.
const MaxSums = 4 << 20

// readSums reads base/sums (beneath the card's root): "sha256 path"
// lines ("-" for a file the base did not have), validated (ParseSums).
func (c *Card) readSums() (map[string]string, error) {
	b, err := c.L.ReadFile(c.sumsPath(), MaxSums)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := ParseSums(b, c.Rec.Dirs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (a card changed elsewhere? ovpkg refuses to act on it)", c.sumsPath(), err)
	}
	return m, nil
}

// ParseSums reads base/sums: one "sha256 path" a line, sha256 64 hex
// digits or "-". Every path must be a clean relative path (no "..", no
// "." component, not absolute, no control characters, at most 4096
// bytes) inside one of the overlaid directories dirs; anything else is
// an error naming the line.
func ParseSums(b []byte, dirs []string) (map[string]string, error) {
	m := map[string]string{}
	lines := strings.SplitAfter(string(b), "\n")
	for i, ln := range lines {
		s, p, _ := strings.Cut(strings.TrimSuffix(ln, "\n"), " ")
		if ln == "" && i == len(lines)-1 {
			break
		}
		if len(b) > MaxSums || !validSum(s) {
			return nil, errors.New("line " + strconv.Itoa(i+1) + " is not \"SHA256 PATH\": " + quoteShort(ln))
		}
		if err := checkRelPath(p, dirs); err != nil {
			return nil, errors.New("line " + strconv.Itoa(i+1) + ": " + err.Error())
		}
		m[p] = s
	}
	return m, nil
}

func validSum(s string) bool {
	if s == "-" {
		return true
	}
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// checkRelPath validates a root-relative path read from the card: clean,
// relative, no "..", bounded, printable, strictly inside one of dirs.
func checkRelPath(p string, dirs []string) error {
	if len(p) > 4096 || hasControl(p) || beneath.CheckRel(p) != nil || p == "." {
		return errors.New("path " + quoteShort(p) + " is not a clean relative path (refused: it could name a file outside the overlaid directories)")
	}
	if overlaidDir(p, dirs) == "" {
		return errors.New("path " + quoteShort(p) + " is not inside an overlaid directory (" + strings.Join(dirs, " ") + ")")
	}
	return nil
}

// overlaidDir returns the longest of dirs that strictly contains rel.
func overlaidDir(rel string, dirs []string) string {
	best := ""
	for _, d := range dirs {
		if strings.HasPrefix(rel, d+"/") && len(d) > len(best) {
			best = d
		}
	}
	return best
}

func (c *Card) writeSums(m map[string]string) error {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(m[k] + " " + k + "\n")
	}
	if err := c.L.MkdirAll(c.baseDir(), 0o700); err != nil {
		return err
	}
	return c.L.WriteFile(c.sumsPath(), []byte(b.String()), 0o644)
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// shadowed reports whether any card layer holds rel (not as a whiteout).
func (c *Card) shadowed(stack []string, rel string) bool {
	for _, id := range stack {
		st, err := c.L.Lstat(filepath.Join(c.L.Tree(id), rel))
		if err == nil && !layer.IsWhiteout(st) || errors.Is(err, unix.ELOOP) {
			return true
		}
	}
	return false
}

// conffiles returns the conffiles a status database lists (relative).
func conffiles(status []byte) []string {
	var out []string
	in := false
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Conffiles:") {
			in = true
			continue
		}
		if in && strings.HasPrefix(l, " ") {
			f := strings.Fields(l)
			if len(f) >= 1 && strings.HasPrefix(f[0], "/") {
				out = append(out, strings.TrimPrefix(f[0], "/"))
			}
			continue
		}
		in = false
	}
	return out
}

// under reports whether rel is a valid path inside one of the overlaid
// dirs.
func (c *Card) under(rel string) bool { return checkRelPath(rel, c.Rec.Dirs) == nil }

// watchList returns the watched paths for the base read at root.
func (c *Card) watchList(root string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] && c.under(p) {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, w := range Watched {
		add(w)
	}
	for _, st := range []string{"var/lib/dpkg/status", "usr/lib/opkg/status", "var/lib/opkg/status"} {
		if b, err := os.ReadFile(filepath.Join(root, st)); err == nil {
			for _, cf := range conffiles(b) {
				add(cf)
			}
		}
	}
	return out
}

// RecordBase notes, for every watched file the card shadows and that has
// no record yet, the base's version (sha256 and a copy): the "old" side
// of a later three-way rebase. Records of files the card no longer
// shadows are dropped. Called at every commit.
func (c *Card) RecordBase() error {
	stack, err := c.Stack()
	if err != nil {
		return err
	}
	sums, err := c.readSums()
	if err != nil {
		return err
	}
	changed := false
	err = c.WithBase(func(base func(string) string) error {
		root := base(c.Rec.Root)
		for _, rel := range c.watchList(root) {
			if !c.shadowed(stack, rel) {
				if _, ok := sums[rel]; ok {
					delete(sums, rel)
					if err := c.L.Remove(c.baseCopy(rel)); err != nil {
						return err
					}
					changed = true
				}
				continue
			}
			if _, ok := sums[rel]; ok {
				continue
			}
			b, err := os.ReadFile(filepath.Join(root, rel))
			s := "-"
			if err == nil {
				s = sum(b)
				if err := c.L.MkdirAll(filepath.Dir(c.baseCopy(rel)), 0o700); err != nil {
					return err
				}
				if err := c.L.WriteFile(c.baseCopy(rel), b, 0o600); err != nil {
					return err
				}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			sums[rel] = s
			changed = true
		}
		return nil
	})
	if err != nil || !changed {
		return err
	}
	return c.writeSums(sums)
}

// Drift is a watched file that changed in the base since the card copied
// it.
type Drift struct {
	Path     string `json:"path"`
	Old      string `json:"old_sha256"` // "-" when the base did not have it
	New      string `json:"new_sha256"` // "-" when the base no longer has it
	Merger   string `json:"merger"`     // status, entries or lines
	oldData  []byte
	newData  []byte
	mode     os.FileMode // the base's file's (for a file the card lacks)
	uid, gid int
}

// Drift compares the base now with what it was when the card copied each
// watched file.
func (c *Card) Drift() ([]Drift, error) {
	sums, err := c.readSums()
	if err != nil || len(sums) == 0 {
		return nil, err
	}
	var out []Drift
	err = c.WithBase(func(base func(string) string) error {
		for rel, old := range sums {
			b, err := os.ReadFile(base(filepath.Join(c.Rec.Root, rel)))
			now := "-"
			if err == nil {
				now = sum(b)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if now != old {
				d := Drift{Path: rel, Old: old, New: now, Merger: merge.KindFor(rel).String(), newData: b, mode: 0o644}
				var st unix.Stat_t
				if unix.Stat(base(filepath.Join(c.Rec.Root, rel)), &st) == nil {
					d.mode, d.uid, d.gid = os.FileMode(st.Mode&0o7777), int(st.Uid), int(st.Gid)
				}
				old, err := c.L.ReadFile(c.baseCopy(rel), MaxMerge)
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
				d.oldData = old
				out = append(out, d)
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
}

// MaxMerge bounds a file rebase reads whole (the package status of a
// large system is a few MB).
const MaxMerge = 64 << 20

// overlaidRoot opens the overlaid directory that holds rel (a path checked by
// checkRelPath) for resolution beneath it, and returns rel inside it.
// The overlay's mount point is the config's (trusted); below it nothing
// is followed: a link on the card cannot send a write elsewhere.
func (c *Card) overlaidRoot(rel string) (*beneath.Root, string, error) {
	if err := checkRelPath(rel, c.Rec.Dirs); err != nil {
		return nil, "", err
	}
	d := overlaidDir(rel, c.Rec.Dirs)
	r, err := beneath.OpenRoot(filepath.Join(c.Rec.Root, d))
	if err != nil {
		return nil, "", err
	}
	return r, strings.TrimPrefix(rel, d+"/"), nil
}

// readOverlaid reads rel as the overlays show it (the card's version),
// without following a link anywhere on the way, with its stat.
func (c *Card) readOverlaid(rel string) ([]byte, *unix.Stat_t, error) {
	r, in, err := c.overlaidRoot(rel)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	st, err := r.Lstat(in)
	if err != nil {
		return nil, nil, err
	}
	b, err := r.ReadFile(in, MaxMerge)
	if err != nil {
		return nil, nil, err
	}
	return b, st, nil
}

// writeOverlaid replaces rel through the overlays atomically
// (internal/atomicfile: owner and mode set on the new file, fsync,
// rename, directory fsync), never following a link.
func (c *Card) writeOverlaid(rel string, data []byte, mode os.FileMode, uid, gid int) error {
	r, in, err := c.overlaidRoot(rel)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.WriteFileOwned(in, data, mode, uid, gid)
}

// RebaseResult is what Rebase merged.
type RebaseResult struct {
	Merged []string // paths written
	Notes  []string
}

// Rebase merges every drifted file three ways (the base when the card
// copied it, the base now, the card's version) and writes the results
// through the overlays in a transaction ("rebase"). Any conflict refuses
// the whole rebase with the list, changing nothing.
func (c *Card) Rebase() (*RebaseResult, error) {
	drift, err := c.Drift()
	if err != nil {
		return nil, err
	}
	if len(drift) == 0 {
		return nil, fmt.Errorf("%w: the base has not changed under the card", ErrNothingToDo)
	}
	res := &RebaseResult{}
	type out struct {
		rel      string
		data     []byte
		mode     os.FileMode
		uid, gid int
	}
	var outs []out
	var conflicts []error
	for _, d := range drift {
		// Through the overlay: the card's version, never following a
		// link (a card whose etc/passwd is a link to /etc/shadow would
		// otherwise merge shadow's hashes into passwd).
		card, st, err := c.readOverlaid(d.Path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		r := merge.File(d.Path, d.oldData, d.newData, card)
		if !r.Clean() {
			conflicts = append(conflicts, &merge.ConflictError{File: "/" + d.Path, Conflicts: r.Conflicts})
			continue
		}
		for _, n := range r.Notes {
			res.Notes = append(res.Notes, "/"+d.Path+": "+n)
		}
		// Owner and mode: the card's file's, else the base's.
		o := out{rel: d.Path, data: r.Text, mode: d.mode, uid: d.uid, gid: d.gid}
		if st != nil {
			o.mode, o.uid, o.gid = os.FileMode(st.Mode&0o7777), int(st.Uid), int(st.Gid)
		}
		if !bytes.Equal(r.Text, card) {
			outs = append(outs, o)
		}
	}
	if len(conflicts) > 0 {
		return nil, fmt.Errorf("rebase refused, nothing changed: %w", errors.Join(conflicts...))
	}
	write := func() error {
		for _, o := range outs {
			if err := c.writeOverlaid(o.rel, o.data, o.mode, o.uid, o.gid); err != nil {
				return err
			}
			res.Merged = append(res.Merged, "/"+o.rel)
		}
		return nil
	}
	if len(outs) > 0 {
		if err := c.Do("rebase", nil, write); err != nil {
			return nil, err
		}
	}
	// The base's current versions become the new "old" side.
	sums, err := c.readSums()
	if err != nil {
		return res, err
	}
	for _, d := range drift {
		sums[d.Path] = d.New
		if d.newData != nil {
			if err := c.L.MkdirAll(filepath.Dir(c.baseCopy(d.Path)), 0o700); err != nil {
				return res, err
			}
			if err := c.L.WriteFile(c.baseCopy(d.Path), d.newData, 0o600); err != nil {
				return res, err
			}
		} else if err := c.L.Remove(c.baseCopy(d.Path)); err != nil {
			return res, err
		}
	}
	return res, c.writeSums(sums)
}
