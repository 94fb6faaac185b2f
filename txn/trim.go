package txn

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ovpkg/ovpkg/layer"
)

// Keeping the package manager's bookkeeping out of transaction layers
// (docs/layers.md, "What a transaction's layer holds"). A package manager
// run writes, besides the packages' files and its database, files that
// are not part of what a rollback must undo, and overlayfs copies each one
// whole into the transaction's layer: on Debian 12 a one-file package
// costs about 7 MiB of card (man-db's index 3.6 MB, debconf's templates
// 1 MB, dpkg's status-old 0.66 MB, the logs). After the commit point,
// while the overlays are down for the new working layer anyway, the
// committed layer is trimmed; the merged view stays the same, except
// for a cache:
//
//   - sharedFiles and sharedDirs (logs, "-old" backups, apt's and
//     fontconfig's self-checking caches) are moved down into the bottom
//     layer: one copy on the card, the newest, never rolled back (a
//     rollback keeps the log lines of what it undid, a backup stays a
//     backup of an earlier state, a stale cache is never used);
//   - everything under droppedDirs (man-db's index, ldconfig's
//     aux-cache) is removed from the transaction's layer: the view shows
//     the one below it; man-db's then does not know the card's pages (man
//     and man -w still find them; whatis and apropos show the base's),
//     and so never names a page a rollback removed;
//   - files overlayfs copied up unchanged (identical content, metadata and
//     modification time to the view below: debconf's databases, lock
//     files) are removed.
//
// The database (dpkg's status, info files, triggers, apt's
// extended_states, debconf's databases when they changed, /etc/passwd...)
// stays in the layer, so a rollback still leaves dpkg, debconf and the
// users consistent.

// sharedFiles are moved into the bottom layer (paths relative to the
// root; only those under an overlaid directory apply).
var sharedFiles = []string{
	"var/log/dpkg.log",
	"var/log/alternatives.log",
	"var/log/apt/history.log",
	"var/log/apt/term.log",
	"var/log/apt/eipp.log.xz",
	"var/lib/dpkg/status-old",
	"var/lib/dpkg/available-old",
	"var/lib/dpkg/diversions-old",
	"var/lib/dpkg/statoverride-old",
	"var/cache/debconf/config.dat-old",
	"var/cache/debconf/templates.dat-old",
	"var/cache/debconf/passwords.dat-old",
	"var/cache/apt/pkgcache.bin",
	"var/cache/apt/srcpkgcache.bin",
	"var/log/fontconfig.log",
}

// sharedDirs hold caches whose every file is shared the same way:
// fontconfig's (checked by fontconfig against each font directory's
// modification time; one for a directory that is gone is never read).
var sharedDirs = []string{
	"var/cache/fontconfig",
}

// droppedDirs hold regenerable caches whose files are removed from
// transaction layers.
var droppedDirs = []string{
	"var/cache/man",
	"var/cache/ldconfig", // aux-cache: ldconfig's own, checked against each library
}

// trimPlan is what the trim of a committed transaction's layer will
// remove from it, worked out before the commit point (read-only).
type trimPlan struct {
	id    string         // the transaction's layer
	drop  []layer.FileID // its files under droppedDirs and its unchanged copies
	bytes int64          // what the trim frees in the layer, shared files included
}

// overlaid reports whether the root-relative path rel lies in one of the
// overlaid directories.
func (c *Card) overlaid(rel string) bool {
	for _, d := range c.Rec.Dirs {
		d = strings.Trim(filepath.Clean(d), "/")
		if strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}

// planTrim lists what trimming layer id (the top of committed) will take
// out of it. It reads the layers and the base only.
func (c *Card) planTrim(committed []string, id string) (*trimPlan, error) {
	p := &trimPlan{id: id}
	tree := c.L.Tree(id)
	trees := c.trees(committed)
	shared, err := c.sharedPaths(trees)
	if err != nil {
		return nil, err
	}
	for _, rel := range shared {
		if f, i, ok := layer.SinkSource(trees, rel); ok && committed[i] == id {
			p.bytes += f.Bytes()
		}
	}
	for _, d := range droppedDirs {
		if !c.overlaid(d + "/") {
			continue
		}
		fs, err := layer.Files(tree, d)
		if err != nil {
			return nil, err
		}
		p.drop = append(p.drop, fs...)
	}
	err = c.WithBase(func(base func(string) string) error {
		below := c.below(committed, id, base(c.Rec.Root))
		same, err := layer.Unchanged(tree, below)
		if err != nil {
			return err
		}
		for _, f := range same {
			if !slices.ContainsFunc(p.drop, func(g layer.FileID) bool { return g.Rel == f.Rel }) && !slices.Contains(shared, f.Rel) {
				p.drop = append(p.drop, f)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, f := range p.drop {
		p.bytes += f.Bytes()
	}
	return p, nil
}

// sharedPaths lists the shared files (sharedFiles, and the files under
// sharedDirs in any layer but the bottom one) under the overlaid
// directories.
func (c *Card) sharedPaths(trees []string) ([]string, error) {
	var out []string
	for _, rel := range sharedFiles {
		if c.overlaid(rel) {
			out = append(out, rel)
		}
	}
	for _, d := range sharedDirs {
		if !c.overlaid(d + "/") {
			continue
		}
		for _, t := range trees[1:] {
			fs, err := layer.Files(t, d)
			if err != nil {
				return nil, err
			}
			for _, f := range fs {
				if !slices.Contains(out, f.Rel) {
					out = append(out, f.Rel)
				}
			}
		}
	}
	return out, nil
}

// trees returns the layer trees of stack, bottom first.
func (c *Card) trees(stack []string) []string {
	var out []string
	for _, id := range stack {
		out = append(out, c.L.Tree(id))
	}
	return out
}

// below returns the trees under layer id in stack, topmost first, then
// base (the base root's path as the caller can read it).
func (c *Card) below(stack []string, id, base string) []string {
	var out []string
	i := slices.Index(stack, id)
	for j := i - 1; j >= 0; j-- {
		out = append(out, c.L.Tree(stack[j]))
	}
	return append(out, base)
}

// trim carries out p on the committed stack. The overlays must be down
// (it runs between a restack's unmount and mount: the base is then
// visible at the targets). A layer that is still the upper of a detached
// overlay (its holders may write to it) is not changed.
func (c *Card) trim(p *trimPlan, committed []string) error {
	if c.Rec.LayerInUse(p.id) {
		return nil
	}
	// Layers the holders of an old overlay may still write to are left
	// alone: no file moves while any layer of the stack is one.
	sink := true
	for _, id := range committed {
		if c.Rec.LayerInUse(id) {
			sink = false
		}
	}
	trees := c.trees(committed)
	removed := map[int][]string{} // layer index -> paths taken out of it
	var errs []error
	shared, err := c.sharedPaths(trees)
	if err != nil {
		errs = append(errs, err)
	}
	for _, rel := range shared {
		if !sink {
			break
		}
		touched, err := layer.Sink(trees, rel)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, i := range touched {
			removed[i] = append(removed[i], rel)
		}
	}
	crash("commit-trim") // the shared files moved, the rest not yet
	top := slices.Index(committed, p.id)
	tree := c.L.Tree(p.id)
	for _, f := range p.drop {
		ok, err := layer.RemoveIfSame(tree, f)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed[top] = append(removed[top], f.Rel)
		}
	}
	for i, rels := range removed {
		if _, err := layer.PruneEmpty(trees[i], rels, c.below(committed, committed[i], c.Rec.Root)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(removed) > 0 {
		if err := syncFS(c.L.Top()); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("taking the package manager's logs and caches out of layer %s: %v", p.id, errs[0])
	}
	return nil
}
