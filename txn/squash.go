package txn

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/layer"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/overlay"
)

// SquashAll is `ovpkg commit`: every layer merged into one (whiteouts and
// opaque directories kept, since the base is below).
func (c *Card) SquashAll() (string, error) {
	stack, err := c.Stack()
	if err != nil {
		return "", err
	}
	if len(stack) < 2 {
		return "", fmt.Errorf("%w: the card has one layer (%s)", ErrNothingToDo, stack[0])
	}
	return c.squashRange(stack, 0, len(stack), "commit")
}

// AutoSquash merges the oldest layers so that keepAfterSquash layers are
// left (the newest stay separate for rollback). The top layer (the live
// upper) is not touched, so the overlays only need a restack.
func (c *Card) AutoSquash() error {
	stack, err := c.Stack()
	if err != nil {
		return err
	}
	if len(stack) <= keepAfterSquash {
		return nil
	}
	hi := len(stack) - keepAfterSquash + 1
	id, err := c.squashRange(stack, 0, hi, "auto-squash")
	if err == nil {
		c.say("ovpkg: %d layers: the oldest %d were squashed into layer %s (limit %d)", len(stack), hi, id, LayerLimit())
	}
	return err
}

// squashRange merges stack[lo:hi] into one new layer. Order, so that an
// interruption at any point leaves the old or the new state: overlays
// down (only when the top layer is included), linked squash into a new
// layer directory (the old layers stay intact), stack file switched (the
// commit point), overlays up on the new stack, old layers deleted. A full
// card (ENOSPC) deletes the half-made layer and changes nothing else.
func (c *Card) squashRange(stack []string, lo, hi int, command string) (_ string, retErr error) {
	// The plan holds an entry per file: collect garbage more eagerly
	// (measured: 30k files, peak RSS 24 MB -> 20 MB, same time).
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	if j, err := c.readJournal(); err != nil || j != nil {
		return "", fmt.Errorf("%w (run ovmount or any ovpkg command to recover it)", ErrInTxn)
	}
	id, err := c.nextID()
	if err != nil {
		return "", err
	}
	old := slices.Clone(stack[lo:hi])
	newStack := append(append(slices.Clone(stack[:lo]), id), stack[hi:]...)
	includesTop := hi == len(stack)

	tab, err := mount.Self()
	if err != nil {
		return "", err
	}
	up := c.live(tab)
	if includesTop && len(up) > 0 {
		if err := c.checkBusy(tab, up); err != nil {
			return "", err
		}
	}
	if err := c.writeJournal(Journal{Op: "squash", ID: id, Command: command, Time: time.Now().UTC(), Args: old}); err != nil {
		return "", squashErr(err)
	}
	down := false
	committed := false
	defer func() {
		if retErr == nil {
			return
		}
		if !committed {
			c.L.RemoveLayer(id, true)
			if down {
				if err := overlay.Stack(up, overlay.StackOptions{}); err != nil {
					retErr = fmt.Errorf("%w; mounting the overlays again failed: %v (run ovmount)", retErr, err)
				}
			}
			c.removeJournal()
		}
	}()
	if includesTop && len(up) > 0 {
		if err := overlay.Unstack(up); err != nil {
			return "", err
		}
		down = true
	}
	if err := c.L.NewLayerDir(id); err != nil {
		return "", squashErr(err)
	}
	var trees []string
	for _, l := range old {
		trees = append(trees, c.L.Tree(l))
	}
	// The base as it is under the card: whiteouts are kept only where it
	// has something to hide (see layer.Options.Base).
	ns, err := newPrivateNS(c.targets())
	if err != nil {
		return "", err
	}
	_, err = layer.Squash(c.L.Tree(id), trees, layer.Options{KeepWhiteouts: true, Link: true, Base: ns.Path(c.Rec.Root)})
	ns.Close()
	if err != nil {
		return "", squashErr(err)
	}
	if err := c.L.EnsureDirs(id, c.Rec.Dirs); err != nil {
		return "", squashErr(err)
	}
	if err := syncFS(c.L.Top()); err != nil {
		return "", squashErr(err)
	}
	crash("squash-copy")
	if err := c.L.WriteStack(newStack); err != nil {
		return "", squashErr(err)
	}
	crash("squash-stack")
	// Overlays up on the new stack.
	if len(up) > 0 || down {
		var err error
		if down {
			var ms []overlay.Mount
			ms, err = c.mountsFor(newStack)
			if err == nil {
				prev := *c.Rec
				c.setLayers(newStack, ms)
				if err = c.writeRecord(); err == nil {
					if err = overlay.Stack(ms, overlay.StackOptions{}); err != nil {
						*c.Rec = prev
						c.writeRecord()
					}
				}
			}
		} else {
			err = c.restack(newStack)
		}
		if err != nil {
			if werr := c.L.WriteStack(stack); werr != nil {
				committed = true // the new stack stands; ovmount will mount it
				return "", fmt.Errorf("%w; and restoring the previous stack failed: %v", err, werr)
			}
			return "", err
		}
	}
	committed = true
	down = false
	bytes, _ := layer.DiskUsage(c.L.Tree(id))
	c.appendHistory(Entry{Event: "squash", ID: id, Time: time.Now().UTC(), Command: command, Layers: old, Into: id, Bytes: bytes})
	crash("squash-cleanup")
	for _, l := range old {
		if err := c.removeLayer(l, false); err != nil {
			return id, err
		}
	}
	return id, c.removeJournal()
}

func squashErr(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("the card is full, so the layers could not be squashed (nothing was changed or lost; free some space, or flatten to a bigger card): %w", err)
	}
	return fmt.Errorf("squashing the layers: %w (nothing was changed)", err)
}

func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// Rollback drops the newest n transaction layers, live: overlays
// restacked without them, then the stack file (the commit point), then the
// directories. A working layer (changes made outside ovpkg since the last
// transaction) is kept when it holds changes, dropped when empty; when the
// new top would be a transaction's layer a fresh working layer goes on top.
func (c *Card) Rollback(n int) ([]string, error) {
	stack, err := c.Stack()
	if err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("rollback: N must be at least 1")
	}
	var txns []string // transaction layers above the bottom one, oldest first
	for _, id := range stack[1:] {
		if !c.isWorking(id) {
			txns = append(txns, id)
		}
	}
	if n > len(txns) {
		if len(txns) == 0 {
			return nil, fmt.Errorf("%w: the card has no transaction layer above its bottom layer %s, which holds what was there before any transaction (or what commit squashed together); nothing to roll back", ErrRollbackPast, stack[0])
		}
		return nil, fmt.Errorf("%w: the card has %d transaction layer(s); at most %d can be rolled back (the bottom layer %s holds what was there before the first transaction)", ErrRollbackPast, len(txns), len(txns), stack[0])
	}
	if j, err := c.readJournal(); err != nil || j != nil {
		return nil, fmt.Errorf("%w (run ovmount or any ovpkg command to recover it)", ErrInTxn)
	}
	dropTx := txns[len(txns)-n:]
	var keep, drop []string
	for _, id := range stack {
		switch {
		case slices.Contains(dropTx, id):
			drop = append(drop, id)
		case id != stack[0] && c.isWorking(id) && emptyTree(c.L.Tree(id)):
			drop = append(drop, id)
		default:
			keep = append(keep, id)
		}
	}
	// A fresh working layer goes on top when the new top would be a
	// transaction's layer, or a layer that may not be an upper now (the
	// upper of overlays a restack would detach, or of detached ones).
	var fresh string
	if top := keep[len(keep)-1]; len(keep) > 1 && !c.isWorking(top) || c.mustNotBeUpper(top, c.held()) {
		if fresh, err = c.nextID(); err != nil {
			return nil, err
		}
		if err := c.L.AddLayer(fresh, c.Rec.Dirs); err != nil {
			return nil, err
		}
		c.markWorking(fresh)
		keep = append(keep, fresh)
	}
	if err := c.writeJournal(Journal{Op: "rollback", ID: drop[0], Command: "rollback", Time: time.Now().UTC(), Args: drop}); err != nil {
		if fresh != "" {
			c.L.RemoveLayer(fresh, true)
		}
		return nil, err
	}
	undo := func() {
		if fresh != "" {
			c.L.RemoveLayer(fresh, true)
		}
		c.removeJournal()
	}
	tab, err := mount.Self()
	if err != nil {
		undo()
		return nil, err
	}
	// The stack file is switched (the commit point) while the overlays are
	// down; then whiteouts in the kept layers above the dropped ones that
	// hide nothing any more are removed (only a cosmetic loss if that is
	// interrupted: the kernel would list them as names that cannot be
	// opened).
	committed := false
	switchStack := func() error {
		if err := c.L.WriteStack(keep); err != nil {
			return err
		}
		committed = true
		crash("rollback-switched")
		if err := c.pruneWhiteouts(stack, keep, drop); err != nil {
			c.say("warning: %v", err)
		}
		return nil
	}
	if len(c.live(tab)) > 0 {
		if err := c.restackWith(keep, switchStack); err != nil {
			if !committed {
				undo()
			}
			return nil, err
		}
	} else {
		if len(c.Rec.Overlays) > 0 {
			ms, err := c.mountsFor(keep)
			if err != nil {
				undo()
				return nil, err
			}
			c.setLayers(keep, ms)
			c.writeRecord()
		}
		if err := switchStack(); err != nil {
			return nil, err // Recover restacks onto the old stack
		}
	}
	c.appendHistory(Entry{Event: "rollback", Time: time.Now().UTC(), Command: "rollback", Layers: drop})
	for _, l := range drop {
		if err := c.removeLayer(l, false); err != nil {
			return dropTx, err
		}
	}
	return dropTx, c.removeJournal()
}

// pruneWhiteouts removes, from the layers of keep that sat above the
// lowest dropped layer, the whiteouts that hide nothing once drop is gone
// (layer.PruneWhiteouts). The overlays must be down (the base is then
// visible at the targets) and keep already the committed stack.
func (c *Card) pruneWhiteouts(stack, keep, drop []string) error {
	lowest := len(stack)
	for i, id := range stack {
		if slices.Contains(drop, id) {
			lowest = i
			break
		}
	}
	for ki, id := range keep {
		if slices.Index(stack, id) < lowest {
			continue
		}
		for _, d := range c.Rec.Dirs {
			upper := c.L.Upper(id, d)
			if _, err := os.Stat(upper); err != nil {
				continue
			}
			var below []string
			for j := ki - 1; j >= 0; j-- {
				if p := c.L.Upper(keep[j], d); isDir(p) {
					below = append(below, p)
				}
			}
			below = append(below, c.Rec.BaseDir(d))
			if _, err := layer.PruneWhiteouts(upper, below); err != nil {
				return fmt.Errorf("cleaning layer %s: %w", id, err)
			}
		}
	}
	return nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
