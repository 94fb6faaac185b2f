package txn

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/internal/faults"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/overlay"
)

// Restacking while other processes hold the overlays (see docs/layers.md,
// "Busy overlays"): each old overlay is taken off its directory with
// umount2(MNT_DETACH) and the new one mounted in its place at once. The
// holders keep the old (detached) overlay alive until they exit; new
// lookups see the new stack. Such an old overlay "lingers" with its
// upperdir, so no layer that was its upper may become the upper of a new
// mount, nor be deleted, while it may linger (mountset.Record.Detached).

// held reports whether processes other than this one hold the live
// overlays now (so a restack would detach them).
func (c *Card) held() bool {
	tab, err := mount.Self()
	if err != nil {
		return false
	}
	up := c.live(tab)
	if len(up) == 0 {
		return false
	}
	var be *mountset.BusyError
	return errors.As(c.checkBusy(tab, up), &be)
}

// mustNotBeUpper reports whether layer id may not be the upper of a new
// mount: it is the upper of a detached overlay that may linger, or the
// upper of the live overlays while they are held (a restack would detach
// them).
func (c *Card) mustNotBeUpper(id string, held bool) bool {
	return c.Rec.LayerInUse(id) || held && id == c.Rec.TopLayer
}

// restackOnto restacks onto stack (the committed stack); when its top
// layer may not be an upper now (see mustNotBeUpper) a fresh empty
// working layer goes on top of it (and into the stack file).
func (c *Card) restackOnto(stack []string) error {
	if c.mustNotBeUpper(stack[len(stack)-1], c.held()) {
		return c.addWorking(stack)
	}
	return c.restack(stack)
}

// pruneDetached forgets the detached overlays nobody holds any more
// (caller holds the lock) and returns the ones still held.
func (c *Card) pruneDetached() ([]mountset.Lingering, error) {
	if len(c.Rec.Detached) == 0 {
		return nil, nil
	}
	tab, err := mount.Self()
	if err != nil {
		return nil, err
	}
	still, changed, err := mountset.PruneDetached(c.Opt.ProcDir, tab, c.Rec)
	if err != nil {
		return nil, err
	}
	if changed && c.runDir != "" {
		if err := c.writeRecord(); err != nil {
			return nil, err
		}
	}
	return still, nil
}

// restackDetached is restackWith for held overlays (be names the
// holders). The new stack's uppers must be fresh: it refuses (returning
// be) when one is the upper of a live overlay or of a detached one. For
// each directory the old overlay is unmounted (lazily only when it is
// busy) and the new one mounted at once; with between set, all are taken
// off first, between runs, then all are mounted. When a mount fails, every
// directory gets a fresh overlay over the previous layers with a new
// empty working layer as the upper (the previous upper may linger).
func (c *Card) restackDetached(tab mount.Table, up, next []overlay.Mount, ids []string, between func() error, be *mountset.BusyError) (retErr error) {
	if len(up) != len(c.Rec.Overlays) {
		return be
	}
	for _, m := range next {
		for _, o := range up {
			if filepath.Clean(o.Upper) == filepath.Clean(m.Upper) {
				return be
			}
		}
		if c.Rec.UpperInUse(m.Upper) {
			return be
		}
	}
	old := *c.Rec
	old.Detached = slices.Clone(c.Rec.Detached)
	prevIDs := slices.Clone(c.Rec.Layers)
	var cand []mountset.DetachedOverlay
	for _, m := range up {
		o := tab.OverlayUsingUpper(m.Upper)
		if o == nil || o.Mountpoint != filepath.Clean(m.Target) {
			return be
		}
		cand = append(cand, mountset.DetachedOverlay{Target: m.Target, Dev: mount.Dev(o), Upper: m.Upper, Layers: prevIDs, MntID: mountset.MountID(m.Target)})
	}
	// The record names every old overlay as possibly lingering before
	// any is touched (those unmounted cleanly are pruned: their device
	// is gone or reused), so eject and the next command know.
	c.setLayers(ids, next)
	c.Rec.Detached = append(slices.Clone(old.Detached), cand...)
	if err := c.writeRecord(); err != nil {
		*c.Rec = old
		return err
	}
	var detached []mountset.DetachedOverlay
	takeOff := func(i int) error {
		m := up[i]
		err := mount.Unmount(m.Target, 0)
		if errors.Is(err, unix.EBUSY) {
			err = mount.Unmount(m.Target, unix.MNT_DETACH)
			if err == nil {
				detached = append(detached, cand[i])
			}
		}
		return err
	}
	var failed error
	if between == nil {
		for i := range up {
			if err := takeOff(i); err != nil {
				failed = err
				break
			}
			if err := testFail(fmt.Sprintf("detach-mount-%d", i+1)); err != nil {
				failed = &overlay.Error{Target: next[i].Target, Step: "mount (test)", Err: err}
				break
			}
			if err := overlay.MountOne(next[i]); err != nil {
				failed = err
				break
			}
			if i == 0 {
				crash("detach-first") // one directory restacked, the others not yet
			}
		}
	} else {
		for i := range up {
			if err := takeOff(i); err != nil {
				failed = err
				break
			}
		}
		crash("restack-down")
		if failed == nil {
			failed = between()
		}
		if failed == nil {
			for i := range next {
				if err := overlay.MountOne(next[i]); err != nil {
					failed = err
					break
				}
			}
		}
	}
	if failed != nil {
		return c.putBack(old, prevIDs, up, next, detached, failed)
	}
	c.Rec.Detached = append(slices.Clone(old.Detached), detached...)
	if err := c.writeRecord(); err != nil {
		c.say("warning: writing the mount record: %v", err)
	}
	// Processes of ovpkg's own pipeline (`ovpkg install x | tee log`)
	// hold the old overlay only until ovpkg exits: not worth a word.
	peers := busy.PipelinePeers(c.procDir(), os.Getpid())
	var holders []busy.Holder
	for _, h := range be.Holders {
		if !slices.Contains(peers, h.PID) {
			holders = append(holders, h)
		}
	}
	if len(detached) > 0 && len(holders) > 0 {
		var ts []string
		for _, d := range detached {
			ts = append(ts, d.Target)
		}
		c.say("ovpkg: restacked while in use: %s", mountset.Lingering{DetachedOverlay: mountset.DetachedOverlay{Target: strings.Join(ts, ", ")}, Holders: holders})
	}
	return nil
}

// putBack gives every directory a working overlay again after a failed
// detaching restack: whatever ovpkg overlay is on top at each target
// (new or old) is taken off, and an overlay over the previous layers with
// a fresh empty working layer as its upper is mounted.
func (c *Card) putBack(old mountset.Record, prevIDs []string, up, next []overlay.Mount, detached []mountset.DetachedOverlay, failed error) error {
	fresh, err := c.nextID()
	if err == nil {
		err = c.L.AddLayer(fresh, old.Dirs)
	}
	if err == nil {
		err = c.markWorking(fresh)
	}
	if err != nil {
		return fmt.Errorf("%w; and making a layer to mount the previous stack again failed: %v (run ovmount)", failed, err)
	}
	ids := append(slices.Clone(prevIDs), fresh)
	ms, err := c.mountsFor(ids)
	if err != nil {
		return fmt.Errorf("%w; and mounting the previous stack again failed: %v (run ovmount)", failed, err)
	}
	tab, _ := mount.Self()
	det := detached
	var errs []error
	for i, m := range ms {
		if cur := tab.Lookup(m.Target); cur != nil && cur.FSType == overlay.FSType {
			u, _ := mount.SuperOption(cur, "upperdir")
			if filepath.Clean(u) == filepath.Clean(up[i].Upper) || filepath.Clean(u) == filepath.Clean(next[i].Upper) {
				d := mountset.DetachedOverlay{Target: m.Target, Dev: mount.Dev(cur), Upper: u, Layers: prevIDs, MntID: mountset.MountID(m.Target)}
				if filepath.Clean(u) == filepath.Clean(next[i].Upper) {
					d.Layers = slices.Clone(c.Rec.Layers)
				}
				if err := mount.Unmount(m.Target, 0); errors.Is(err, unix.EBUSY) {
					if err := mount.Unmount(m.Target, unix.MNT_DETACH); err != nil {
						errs = append(errs, err)
						continue
					}
					det = append(det, d)
				} else if err != nil {
					errs = append(errs, err)
					continue
				}
			}
		}
		if err := overlay.MountOne(m); err != nil {
			errs = append(errs, err)
		}
	}
	*c.Rec = old
	c.setLayers(ids, ms)
	c.Rec.Detached = append(c.Rec.Detached, det...)
	werr := c.writeRecord()
	if st, err := c.L.Layers(); err == nil && slices.Equal(st, prevIDs) {
		c.L.WriteStack(ids)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w; and mounting the previous stack again failed: %v (run ovmount)", failed, errors.Join(errs...))
	}
	if werr != nil {
		return fmt.Errorf("%w; the previous stack is mounted again, but writing the mount record failed: %v", failed, werr)
	}
	return fmt.Errorf("%w (the previous layers are mounted again, under a new empty working layer %s)", failed, fresh)
}

// Lingering returns the old overlays that a restack detached and that
// processes still hold (read-only: the record is not pruned).
func (c *Card) Lingering() ([]mountset.Lingering, error) {
	tab, err := mount.Self()
	if err != nil {
		return nil, err
	}
	still, _, err := mountset.CheckDetached(c.Opt.ProcDir, tab, c.Rec)
	return still, err
}

func testFail(step string) error { return faults.Fail(step) }

func (c *Card) procDir() string {
	if c.Opt.ProcDir == "" {
		return "/proc"
	}
	return c.Opt.ProcDir
}
