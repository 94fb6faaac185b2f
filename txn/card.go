package txn

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/internal/atomicfile"
	"github.com/ovpkg/ovpkg/internal/faults"
	"github.com/ovpkg/ovpkg/internal/selfexec"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/overlay"
)

// Errors callers test with errors.Is.
var (
	ErrNoCard       = errors.New("no card is mounted")
	ErrNotMounted   = errors.New("the overlays are not mounted")
	ErrNothingToDo  = errors.New("nothing to do")
	ErrInTxn        = errors.New("a transaction is in progress")
	ErrRollbackPast = errors.New("cannot roll back past the first layer")
)

// Card is a mounted card with its live overlays.
type Card struct {
	Opt    mountset.Options
	Rec    *mountset.Record
	L      *card.Layout
	Out    io.Writer
	runDir string
	baseNS *privateNS // the base's view while Commit runs (WithBase)
}

// Open finds the card mounted now (ErrNoCard when none). The overlays may
// be down (after uovmount); commands that need them check Live.
func Open(opt mountset.Options) (*Card, error) {
	rec, err := mountset.Current(opt)
	if errors.Is(err, mountset.ErrNotMounted) {
		return nil, fmt.Errorf("%w (run ovmount first)", ErrNoCard)
	}
	if err != nil {
		return nil, err
	}
	l, err := card.Open(rec.CardMount)
	if err != nil {
		return nil, err
	}
	runDir, err := mountset.RunDir(opt)
	if err != nil {
		return nil, err
	}
	out := opt.Out
	if out == nil {
		out = io.Discard
	}
	return &Card{Opt: opt, Rec: rec, L: l, Out: out, runDir: runDir}, nil
}

func (c *Card) say(format string, a ...any) { fmt.Fprintf(c.Out, format+"\n", a...) }

// Stack returns the committed layer ids, bottom to top.
func (c *Card) Stack() ([]string, error) { return c.L.Layers() }

// live returns the recorded overlays that are mounted now.
func (c *Card) live(tab mount.Table) []overlay.Mount {
	var up []overlay.Mount
	for _, m := range c.Rec.Overlays {
		if o := tab.OverlayUsingUpper(m.Upper); o != nil && o.Mountpoint == filepath.Clean(m.Target) {
			up = append(up, m)
		}
	}
	return up
}

// Live reports whether every recorded overlay is mounted.
func (c *Card) Live() (bool, error) {
	tab, err := mount.Self()
	if err != nil {
		return false, err
	}
	return len(c.Rec.Overlays) > 0 && len(c.live(tab)) == len(c.Rec.Overlays), nil
}

// mountsFor returns the overlays of c.Rec.Dirs over layer ids (bottom to
// top), creating the top layer's upper and work directories if missing.
func (c *Card) mountsFor(ids []string) ([]overlay.Mount, error) {
	top := ids[len(ids)-1]
	if err := c.L.EnsureDirs(top, c.Rec.Dirs); err != nil {
		return nil, err
	}
	var ms []overlay.Mount
	for _, d := range c.Rec.Dirs {
		target := filepath.Join(c.Rec.Root, d)
		// Checked beneath the card's root, then by inode (card.OverlayDirs).
		upper, work, lowers, err := c.L.OverlayDirs(ids, d)
		if err != nil {
			return nil, err
		}
		m := overlay.Mount{Target: target, Upper: upper, Work: work, Lowers: lowers, NoSuid: c.Rec.NoSuid()}
		m.Lowers = append(m.Lowers, c.Rec.BaseDir(d))
		ms = append(ms, m)
	}
	return ms, nil
}

// devsOf returns the st_dev of the live overlays among ms.
func devsOf(tab mount.Table, ms []overlay.Mount) []uint64 { return mountset.OverlayDevs(tab, ms) }

// LeaveMounts re-executes the running program from memory when its
// binary lives on one of the card's overlays (it would pin them), and
// moves its working directory to /. Call it before anything else in a
// command that restacks; when it re-executes it does not return.
func LeaveMounts(opt mountset.Options) error {
	rec, err := mountset.Current(opt)
	if err != nil {
		return nil // nothing mounted: nothing to leave
	}
	tab, err := mount.Self()
	if err != nil {
		return err
	}
	force := false
	if exe, err := os.Readlink("/proc/self/exe"); err == nil {
		for _, m := range rec.Overlays {
			if strings.HasPrefix(exe, filepath.Clean(m.Target)+"/") {
				force = true
			}
		}
	}
	var ms []overlay.Mount
	ms = append(ms, rec.Overlays...)
	if err := selfexec.FromMemory(mountset.ReexecMarker, devsOf(tab, ms), force); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// checkBusy refuses when a process other than this one holds a file on
// the live overlays.
func (c *Card) checkBusy(tab mount.Table, up []overlay.Mount) error {
	devs := devsOf(tab, up)
	if len(devs) == 0 {
		return nil
	}
	proc := c.Opt.ProcDir
	if proc == "" {
		proc = "/proc"
	}
	hs, err := busy.ScanExcept(proc, devs, []int{os.Getpid()})
	if err != nil {
		return fmt.Errorf("looking for processes that use the overlays: %w", err)
	}
	if len(hs) > 0 {
		return &mountset.BusyError{What: "the overlays are", Holders: hs}
	}
	if need, err := selfexec.Needed(devs); err == nil && need {
		return fmt.Errorf("the overlays are %w: this ovpkg runs from a binary on an overlay (run it from elsewhere, or let it re-execute itself first)", mountset.ErrBusy)
	}
	return nil
}

// restack replaces the live overlays by ones over layer ids (bottom to
// top), all or nothing, and updates the mount record.
func (c *Card) restack(ids []string) error { return c.restackWith(ids, nil) }

// restackWith is restack that runs between (if set) while the overlays
// are down: the layers may be changed then, and the base is visible at
// the targets. An error from between mounts the previous overlays again.
func (c *Card) restackWith(ids []string, between func() error) (retErr error) {
	return c.restackBetween(ids, between, true)
}

// restackBetween is restackWith; with heldToo false, between runs only
// when the overlays are free (a restack that detaches held overlays then
// replaces them one by one, as without between).
func (c *Card) restackBetween(ids []string, between func() error, heldToo bool) (retErr error) {
	tab, err := mount.Self()
	if err != nil {
		return err
	}
	up := c.live(tab)
	next, err := c.mountsFor(ids)
	if err != nil {
		return err
	}
	if len(up) == 0 {
		return fmt.Errorf("%w (run ovmount first)", ErrNotMounted)
	}
	if err := c.checkBusy(tab, up); err != nil {
		var be *mountset.BusyError
		if errors.As(err, &be) {
			if !heldToo {
				between = nil
			}
			return c.restackDetached(tab, up, next, ids, between, be)
		}
		return err
	}
	old := *c.Rec
	if err := overlay.Unstack(up); err != nil {
		return err
	}
	crash("restack-down")
	if between != nil {
		if err := between(); err != nil {
			if rerr := overlay.Stack(up, overlay.StackOptions{}); rerr != nil {
				return fmt.Errorf("%w; mounting the previous overlays again failed too: %v (run ovmount)", err, rerr)
			}
			return err
		}
	}
	c.setLayers(ids, next)
	if err := c.writeRecord(); err != nil {
		*c.Rec = old
		if rerr := overlay.Stack(up, overlay.StackOptions{}); rerr != nil {
			return fmt.Errorf("%w; mounting the previous overlays again failed too: %v (run ovmount)", err, rerr)
		}
		return err
	}
	if err := overlay.Stack(next, overlay.StackOptions{}); err != nil {
		*c.Rec = old
		werr := c.writeRecord()
		if rerr := overlay.Stack(up, overlay.StackOptions{}); rerr != nil {
			return fmt.Errorf("%w; mounting the previous overlays again failed too: %v (run ovmount)", err, rerr)
		}
		if werr != nil {
			return fmt.Errorf("%w; restoring the mount record: %v", err, werr)
		}
		return err
	}
	return nil
}

func (c *Card) setLayers(ids []string, ms []overlay.Mount) {
	top := ids[len(ids)-1]
	c.Rec.Layers = append([]string{}, ids...)
	c.Rec.TopLayer = top
	c.Rec.Tree = c.L.Tree(top)
	c.Rec.Overlays = ms
}

// writeRecord replaces mountset's record (RUN_DIR/mounts.json) with c.Rec.
func (c *Card) writeRecord() error { return mountset.WriteRecord(c.runDir, c.Rec) }

// layerDirs lists the layer directories on the card (sorted; beneath the
// card's root, real directories only).
func (c *Card) layerDirs() ([]string, error) { return c.L.LayerDirs() }

// nextID returns an id above every layer directory and stack entry.
func (c *Card) nextID() (string, error) {
	ids, err := c.layerDirs()
	if err != nil {
		return "", err
	}
	st, _ := c.L.Layers()
	return card.NextID(append(ids, st...)), nil
}

// writeAtomic replaces p with data (internal/atomicfile).
func writeAtomic(p string, data []byte) error { return atomicfile.Write(p, data, 0o644) }

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// CrashPoints are the steps the crash fault point may name (builds with
// the ovpkg_testhooks tag only; see internal/faults).
var CrashPoints = []string{
	"begin-journal", "begin-layer", "restack-down", "begin-restacked",
	"pm", "commit-stack", "commit-history", "commit-journal", "commit-trim", "commit-working",
	"squash-copy", "squash-stack", "squash-cleanup",
	"abort-restacked", "flatten-copy", "rollback-switched", "detach-first",
}

// crash is the fault point of step (a no-op in the product).
func crash(step string) { faults.Crash(step) }

// Crash is crash for callers outside the package (the test verb).
func Crash(step string) { crash(step) }
