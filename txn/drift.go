package txn

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

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

// readSums reads base/sums: "sha256 path" lines ("-" for a file the base
// did not have).
func (c *Card) readSums() (map[string]string, error) {
	m := map[string]string{}
	f, err := os.Open(c.sumsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, p, ok := strings.Cut(sc.Text(), " ")
		if ok {
			m[p] = sum
		}
	}
	return m, sc.Err()
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
	if err := os.MkdirAll(c.baseDir(), 0o700); err != nil {
		return err
	}
	return writeAtomic(c.sumsPath(), []byte(b.String()))
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// shadowed reports whether any card layer holds rel (not as a whiteout).
func (c *Card) shadowed(stack []string, rel string) bool {
	for _, id := range stack {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(c.L.Tree(id), rel), &st) == nil && !layer.IsWhiteout(&st) {
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

// under reports whether rel lies in one of the overlaid dirs.
func (c *Card) under(rel string) bool {
	for _, d := range c.Rec.Dirs {
		if rel == d || strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}

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
					os.Remove(c.baseCopy(rel))
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
				if err := os.MkdirAll(filepath.Dir(c.baseCopy(rel)), 0o700); err != nil {
					return err
				}
				if err := writeAtomic(c.baseCopy(rel), b); err != nil {
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
	Path    string `json:"path"`
	Old     string `json:"old_sha256"` // "-" when the base did not have it
	New     string `json:"new_sha256"` // "-" when the base no longer has it
	Merger  string `json:"merger"`     // status, entries or lines
	oldData []byte
	newData []byte
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
				d := Drift{Path: rel, Old: old, New: now, Merger: merge.KindFor(rel).String(), newData: b}
				d.oldData, _ = os.ReadFile(c.baseCopy(rel))
				out = append(out, d)
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
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
		rel  string
		data []byte
		mode os.FileMode
	}
	var outs []out
	var conflicts []error
	for _, d := range drift {
		p := filepath.Join(c.Rec.Root, d.Path)
		card, err := os.ReadFile(p) // through the overlay: the card's version
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
		mode := os.FileMode(0o644)
		if fi, err := os.Stat(p); err == nil {
			mode = fi.Mode().Perm()
		}
		if !bytes.Equal(r.Text, card) {
			outs = append(outs, out{d.Path, r.Text, mode})
		}
	}
	if len(conflicts) > 0 {
		return nil, fmt.Errorf("rebase refused, nothing changed: %w", errors.Join(conflicts...))
	}
	write := func() error {
		for _, o := range outs {
			p := filepath.Join(c.Rec.Root, o.rel)
			tmp := p + ".ovpkg-rebase"
			if err := os.WriteFile(tmp, o.data, o.mode); err != nil {
				return err
			}
			if fi, err := os.Stat(p); err == nil {
				if st, ok := fi.Sys().(*unix.Stat_t); ok {
					os.Chown(tmp, int(st.Uid), int(st.Gid))
				}
				os.Chmod(tmp, fi.Mode().Perm())
			}
			if err := os.Rename(tmp, p); err != nil {
				os.Remove(tmp)
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
			os.MkdirAll(filepath.Dir(c.baseCopy(d.Path)), 0o700)
			if err := writeAtomic(c.baseCopy(d.Path), d.newData); err != nil {
				return res, err
			}
		} else {
			os.Remove(c.baseCopy(d.Path))
		}
	}
	return res, c.writeSums(sums)
}
