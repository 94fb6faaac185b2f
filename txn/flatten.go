package txn

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/image"
	"github.com/ovpkg/ovpkg/internal/faults"
	"github.com/ovpkg/ovpkg/internal/undo"
	"github.com/ovpkg/ovpkg/layer"
	"github.com/ovpkg/ovpkg/loop"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/overlay"
)

// FlattenOptions tune Flatten.
type FlattenOptions struct {
	To       string // the new image file; must not exist
	WithBase bool   // a full root tree (base + card) instead of a card
	Size     int64  // image size in bytes; 0 = enough for the data, at least the card's size
	Progress func(layer.Progress)
}

// FlattenResult says what Flatten wrote.
type FlattenResult struct {
	Image string        `json:"image"`
	UUID  string        `json:"uuid"`
	Size  int64         `json:"size"`
	Stats layer.Stats   `json:"stats"`
	Kind  string        `json:"kind"` // "card" or "root"
	Info  *image.Info   `json:"-"`
	Took  time.Duration `json:"-"`
}

// Flatten writes a new image holding the merged card layers as the one
// layer of a fresh card layout (or, WithBase, the merged base + card as a
// plain root tree). The image is built under a temporary name, mounted
// with loop.Attach and mount.Mount inside a private mount namespace of
// this thread (nobody else sees it), filled, flushed, unmounted and only
// then renamed into place; an interruption leaves the source untouched
// and no image at To.
func (c *Card) Flatten(o FlattenOptions) (*FlattenResult, error) {
	// The copy streams (layer.Squash): the live heap stays small, and
	// collecting more eagerly keeps the garbage of the walk (paths, stat
	// results) from growing the heap. Measured on the busybox root, 30 000
	// files: GOGC 100 11.4 MB peak RSS, 50 9.7 MB, 25 9.7 MB;
	// SetMemoryLimit(6 MiB) on top 8.3-8.7 MB but run times erratic (up
	// to 4x): not used.
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	start := time.Now()
	abs, err := filepath.Abs(o.To)
	if err != nil {
		return nil, err
	}
	if err := c.checkFlattenTarget(abs); err != nil {
		return nil, err
	}
	if o.WithBase {
		if err := c.checkRootTarget(abs); err != nil {
			return nil, err
		}
	}
	stack, err := c.Stack()
	if err != nil {
		return nil, err
	}
	var trees []string
	for _, id := range stack {
		trees = append(trees, c.L.Tree(id))
	}
	res := &FlattenResult{Image: abs, Kind: "card"}
	if o.WithBase {
		res.Kind = "root"
	}
	ns, err := newPrivateNS(c.targets())
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	// Everything below runs on the namespace's own thread (plain paths
	// there show the base, the card and the new image's mount); the
	// copying workers join the namespace.
	err = ns.Do(func() (retErr error) {
		size := o.Size
		if size == 0 {
			need := int64(0)
			for _, t := range trees {
				n, err := layer.DiskUsage(t)
				if err != nil {
					return err
				}
				need += n
			}
			if o.WithBase {
				n, err := rootUsage(c.Rec.Root, c.Rec.CardMount)
				if err != nil {
					return err
				}
				need += n
			}
			size = need + need/4 + 32*image.MiB
			if !o.WithBase {
				if fi, err := os.Stat(c.Rec.Image); err == nil && fi.Size() > size {
					size = fi.Size()
				}
			}
			size = (size + image.MiB - 1) / image.MiB * image.MiB
			if size < image.MinSize {
				size = image.MinSize
			}
		}
		// Built under a hidden name beside the target, renamed at the end.
		// Every step that changed something adds its undo; on failure
		// they run newest first and every failure is reported.
		tmp := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".ovpkg-flatten")
		os.Remove(tmp) // a leftover of an interrupted flatten
		var undo undo.List
		defer func() {
			if retErr != nil {
				retErr = undoJoin(retErr, &undo)
			}
		}()
		info, err := image.Create(tmp, image.Options{Size: size})
		if err != nil {
			return err
		}
		undo.Add("removing "+tmp, func() error { return removeIfThere(tmp) })
		dev, err := loop.Attach(tmp, loop.Options{Offset: info.PartStart, SizeLimit: info.PartSize, Autoclear: true})
		if err != nil {
			return err
		}
		// Released only through Device.Detach: by the handle Attach left
		// open, or (after the mount, autoclear) once it is confirmed gone
		// or still bound to this very file.
		undo.Add("releasing "+dev.Path, func() error {
			if dev.File != nil {
				return dev.Detach()
			}
			if loop.WaitDetached(dev, 10*time.Second) == nil {
				return nil
			}
			if err := dev.Detach(); err != nil && !errors.Is(err, unix.ENXIO) {
				return err
			}
			return loop.WaitDetached(dev, 10*time.Second)
		})
		mnt, err := os.MkdirTemp("", "ovpkg-flatten-")
		if err != nil {
			return err
		}
		undo.Add("removing "+mnt, func() error { return removeIfThere(mnt) })
		fstype := info.FSType
		if fstype == "" {
			fstype = "ext2"
		}
		if err := mount.Mount(dev.Path, mnt, fstype, unix.MS_NOATIME, ""); err != nil {
			return err
		}
		mounted := true
		undo.Add("unmounting "+mnt, func() error {
			if !mounted {
				return nil
			}
			return mount.Unmount(mnt, 0)
		})
		if err := dev.Close(); err != nil { // the mount keeps the autoclear device bound
			return err
		}
		lo := layer.Options{Progress: o.Progress, ProgressEvery: time.Second, WorkerThread: ns.Join}
		if o.WithBase {
			res.Stats, err = c.flattenRoot(mnt, trees, lo)
		} else {
			res.Stats, err = c.flattenCard(mnt, trees, lo)
		}
		if err != nil {
			return err
		}
		crash("flatten-copy")
		if err := faults.Fail("flatten-copy"); err != nil {
			return fmt.Errorf("writing the new image: %w", err)
		}
		if err := syncFS(mnt); err != nil {
			return fmt.Errorf("flushing the new image: %w", err)
		}
		if err := mount.Unmount(mnt, 0); err != nil {
			return err
		}
		mounted = false
		if err := loop.WaitDetached(dev, 10*time.Second); err != nil {
			return fmt.Errorf("the new image's loop device %s did not go away: %w", dev.Path, err)
		}
		if err := os.Remove(mnt); err != nil {
			return err
		}
		if err := renameNoReplace(tmp, abs); err != nil {
			return err
		}
		undo.Discard()
		if err := syncDir(filepath.Dir(abs)); err != nil {
			return fmt.Errorf("%s is written, but flushing its directory failed: %w", abs, err)
		}
		info.Path = abs
		res.Info, res.UUID, res.Size = info, info.UUID, info.Size
		return nil
	})
	res.Took = time.Since(start)
	return res, err
}

func (c *Card) checkFlattenTarget(abs string) error {
	if _, err := os.Lstat(abs); err == nil {
		return fmt.Errorf("%s already exists; flatten writes a new image only (remove it or choose another name): %w", abs, fs.ErrExist)
	}
	if filepath.Clean(abs) == filepath.Clean(c.Rec.Image) {
		return fmt.Errorf("%s is the card's own image; flatten to a new file", abs)
	}
	if isUnder(abs, c.Rec.CardMount) {
		return fmt.Errorf("%s lies on the card itself (%s); flatten to other media", abs, c.Rec.CardMount)
	}
	for _, t := range c.targets() {
		if isUnder(abs, t) {
			return fmt.Errorf("%s lies under %s, which is overlaid: it would be written onto the card itself; flatten to a directory that is not overlaid", abs, t)
		}
	}
	dir := filepath.Dir(abs)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("directory %s for the new image does not exist", dir)
	}
	return nil
}

// checkRootTarget refuses, for a full root tree (--base), a target that
// flattenRoot would copy into the new image: the image being written
// (built beside the target) would be copied into itself. Allowed: outside
// the root, or under a top-level directory it creates empty (/tmp, /mnt,
// /media, ...: mountset.Forbidden), another filesystem or a mount point.
func (c *Card) checkRootTarget(abs string) error {
	root := filepath.Clean(c.Rec.Root)
	dir := filepath.Dir(abs)
	if !isUnder(dir, root) {
		return nil
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	top := strings.Split(rel, string(filepath.Separator))[0]
	refuse := fmt.Errorf("%s lies in %s, which flatten --base copies into the new image (it would copy the image into itself); write it under %s/mnt, %s/media or %s/tmp, or on another filesystem",
		abs, filepath.Join(root, top), strings.TrimSuffix(root, "/"), strings.TrimSuffix(root, "/"), strings.TrimSuffix(root, "/"))
	if rel == "." {
		return refuse // a top-level file of the root: copied
	}
	topPath := filepath.Join(root, top)
	if contains(mountset.Forbidden, top) || isUnder(c.Rec.CardMount, topPath) {
		return nil
	}
	var rootSt, topSt unix.Stat_t
	if err := unix.Stat(root, &rootSt); err != nil {
		return err
	}
	if err := unix.Lstat(topPath, &topSt); err != nil {
		return err
	}
	if topSt.Mode&unix.S_IFMT == unix.S_IFLNK || // copied as a link
		topSt.Mode&unix.S_IFMT == unix.S_IFDIR && topSt.Dev != rootSt.Dev {
		return nil
	}
	if tab, err := mount.LoadTable("/proc/self/mountinfo"); err == nil && tab.IsMountPoint(topPath) {
		return nil
	}
	return refuse
}

func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if err = os.Link(from, to); err == nil {
			err = os.Remove(from)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s appeared while flatten was writing it; left as it is: %w", to, fs.ErrExist)
	}
	return err
}

func isUnder(p, dir string) bool {
	dir = filepath.Clean(dir)
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// flattenCard writes the merged layers as layer 0001 of a fresh layout.
func (c *Card) flattenCard(mnt string, trees []string, lo layer.Options) (layer.Stats, error) {
	nl, err := card.Init(mnt, nil)
	if err != nil {
		return layer.Stats{}, err
	}
	tree := nl.Tree(card.FirstLayer)
	if err := os.Remove(tree); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return layer.Stats{}, err
	}
	lo.KeepWhiteouts = true
	lo.Base = c.Rec.Root // on the namespace's thread: the base itself
	st, err := layer.Squash(tree, trees, lo)
	if err != nil {
		return st, err
	}
	return st, nl.EnsureDirs(card.FirstLayer, c.Rec.Dirs)
}

// flattenRoot writes the merged base + card as a plain root tree: every
// overlaid directory merged, every other top-level directory of the root
// copied, except kernel/runtime directories and mount points (created
// empty) and the card's mount point.
func (c *Card) flattenRoot(mnt string, trees []string, lo layer.Options) (layer.Stats, error) {
	root := c.Rec.Root
	var total layer.Stats
	ents, err := os.ReadDir(root)
	if err != nil {
		return total, err
	}
	var rootSt unix.Stat_t
	if err := unix.Stat(root, &rootSt); err != nil {
		return total, err
	}
	tab, _ := mount.LoadTable("/proc/thread-self/mountinfo")
	add := func(s layer.Stats) {
		total.Dirs += s.Dirs
		total.Files += s.Files
		total.Bytes += s.Bytes
	}
	for _, e := range ents {
		name := e.Name()
		src := filepath.Join(root, name)
		dst := filepath.Join(mnt, name)
		if name == "lost+found" {
			continue
		}
		if contains(c.Rec.Dirs, name) {
			layers := []string{src}
			for _, t := range trees {
				if st, err := os.Stat(filepath.Join(t, name)); err == nil && st.IsDir() {
					layers = append(layers, filepath.Join(t, name))
				}
			}
			s, err := layer.Squash(dst, layers, lo)
			if err != nil {
				return total, err
			}
			add(s)
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(src, &st); err != nil {
			return total, err
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		skip := contains(mountset.Forbidden, name) || isUnder(c.Rec.CardMount, filepath.Join(c.Rec.Root, name)) ||
			(isDir && (st.Dev != rootSt.Dev || (tab != nil && tab.IsMountPoint(filepath.Join(c.Rec.Root, name)))))
		if skip && isDir {
			if err := os.Mkdir(dst, os.FileMode(st.Mode&0o777)|modeExtra(st.Mode)); err != nil {
				return total, err
			}
			continue
		}
		if skip {
			continue
		}
		if isDir {
			s, err := layer.Copy(dst, src, lo)
			if err != nil {
				return total, err
			}
			add(s)
			continue
		}
		// a top-level file or symlink (merged-/usr links such as bin -> usr/bin)
		if err := copyTopEntry(dst, src, &st); err != nil {
			return total, err
		}
		total.Files++
	}
	return total, nil
}

func modeExtra(m uint32) os.FileMode {
	var out os.FileMode
	if m&unix.S_ISVTX != 0 {
		out |= os.ModeSticky
	}
	return out
}

func copyTopEntry(dst, src string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(t, dst)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, os.FileMode(st.Mode&0o777))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rootUsage estimates the bytes a full root copy needs (same device as
// root only, the card excluded).
func rootUsage(root, cardMount string) (int64, error) {
	var rootSt unix.Stat_t
	if err := unix.Stat(root, &rootSt); err != nil {
		return 0, err
	}
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if d.IsDir() && (st.Dev != rootSt.Dev || isUnder(p, cardMount) && p != root) {
			return filepath.SkipDir
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}

// Dedupe removes from every card layer the regular files and symlinks
// identical to what the layers below and the base show at the same path,
// with the overlays unmounted meanwhile (refused while another process
// holds them) and mounted again afterwards: the merged view is unchanged.
func (c *Card) Dedupe() (layer.DedupeStats, error) {
	var total layer.DedupeStats
	stack, err := c.Stack()
	if err != nil {
		return total, err
	}
	tab, err := mount.Self()
	if err != nil {
		return total, err
	}
	up := c.live(tab)
	if len(up) > 0 {
		if err := c.checkBusy(tab, up); err != nil {
			return total, err
		}
		if err := overlay.Unstack(up); err != nil {
			return total, err
		}
	}
	var derr error
	for i := len(stack) - 1; i >= 0 && derr == nil; i-- {
		for _, d := range c.Rec.Dirs {
			upper := c.L.Upper(stack[i], d)
			if _, err := os.Stat(upper); err != nil {
				continue
			}
			var below []string
			for j := i - 1; j >= 0; j-- {
				p := c.L.Upper(stack[j], d)
				if _, err := os.Stat(p); err == nil {
					below = append(below, p)
				}
			}
			below = append(below, c.Rec.BaseDir(d))
			st, err := layer.Dedupe(upper, below)
			total.Files += st.Files
			total.Dirs += st.Dirs
			total.Bytes += st.Bytes
			if err != nil {
				derr = fmt.Errorf("dedupe of layer %s /%s: %w", stack[i], d, err)
				break
			}
		}
	}
	if len(up) > 0 {
		if err := overlay.Stack(up, overlay.StackOptions{}); err != nil {
			return total, errors.Join(derr, fmt.Errorf("mounting the overlays again: %w (run ovmount)", err))
		}
	}
	if derr != nil {
		return total, derr
	}
	c.appendHistory(Entry{Event: "dedupe", Time: time.Now().UTC(), Command: "dedupe", Bytes: total.Bytes,
		Note: fmt.Sprintf("%d files, %d directories removed", total.Files, total.Dirs)})
	return total, nil
}

// undoJoin runs l (newest first) and joins its failures into err.
func undoJoin(err error, l *undo.List) error { return undo.Join(err, l) }

func removeIfThere(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
