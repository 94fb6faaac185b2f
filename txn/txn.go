package txn

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/internal/faults"
	"github.com/ovpkg/ovpkg/layer"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/overlay"
)

// DefaultLayerLimit is the number of layers past which Commit squashes the
// oldest ones automatically (see docs/layers.md for the lookup figures).
const DefaultLayerLimit = 16

// keepAfterSquash is how many of the newest layers an automatic squash
// leaves separate (so they can still be rolled back one by one).
const keepAfterSquash = 8

// LayerLimit is DefaultLayerLimit, unless (in test builds only)
// OVPKG_TEST_LAYER_LIMIT says otherwise (tests and benchmarks).
func LayerLimit() int {
	if v := faults.Setting("LAYER_LIMIT"); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err == nil && n >= 2 {
			return n
		}
	}
	return DefaultLayerLimit
}

// Txn is a transaction in progress.
type Txn struct {
	c     *Card
	j     Journal
	stack []string // the committed stack when it began
	base  []string // the layers it sits on (stack without an empty working layer)
}

// ID is the transaction's layer id.
func (t *Txn) ID() string { return t.j.ID }

// Begin starts a transaction: journal, new layer directory (not in the
// stack), live overlays restacked with it as the upper.
func (c *Card) Begin(command string, pkgs []string) (*Txn, error) {
	return c.BeginFilled(command, pkgs, nil)
}

// BeginFilled is Begin with the new layer's tree filled by fill (given the
// layer's tree directory, its per-directory uppers already made) before
// the live overlays are restacked onto it: how a change prepared
// elsewhere (ovpkg try) becomes a transaction. A fill error undoes the
// transaction like any other failure in Begin.
func (c *Card) BeginFilled(command string, pkgs []string, fill func(tree string) error) (_ *Txn, retErr error) {
	if j, err := c.readJournal(); err != nil || j != nil {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s %s (%s) since %s; run any ovpkg command or ovmount to recover it", ErrInTxn, j.Op, j.ID, j.Command, j.Time.Format(time.RFC3339))
	}
	live, err := c.Live()
	if err != nil {
		return nil, err
	}
	if !live {
		return nil, fmt.Errorf("%w (run ovmount first)", ErrNotMounted)
	}
	stack, err := c.Stack()
	if err != nil {
		return nil, err
	}
	// An empty working layer on top is left out (it is dropped at the
	// commit point); one holding changes stays below the transaction.
	// When the overlays are held, the restack detaches them and the old
	// working layer lingers as their upper: it stays in the stack then.
	base := stack
	if top := stack[len(stack)-1]; len(stack) > 1 && c.isWorking(top) && emptyTree(c.L.Tree(top)) && !c.held() && !c.Rec.LayerInUse(top) {
		base = stack[:len(stack)-1]
	}
	id, err := c.nextID()
	if err != nil {
		return nil, err
	}
	cmd := journalCommand(command)
	j := Journal{Op: "begin", ID: id, Command: cmd, Time: time.Now().UTC(), Args: pkgs}
	if err := c.writeJournal(j); err != nil {
		return nil, fmt.Errorf("starting transaction %s: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			if !c.Rec.LayerInUse(id) {
				c.L.RemoveLayer(id, true)
			}
			c.removeJournal()
		}
	}()
	crash("begin-journal")
	if err := c.L.AddLayer(id, c.Rec.Dirs); err != nil {
		return nil, fmt.Errorf("starting transaction %s: %w", id, err)
	}
	if fill != nil {
		if err := fill(c.L.Tree(id)); err != nil {
			return nil, fmt.Errorf("starting transaction %s: %w", id, err)
		}
	}
	syncDir(c.L.LayerDir(id))
	syncDir(c.L.LayersDir())
	crash("begin-layer")
	if err := c.restack(append(slices.Clone(base), id)); err != nil {
		return nil, err
	}
	crash("begin-restacked")
	return &Txn{c: c, j: j, stack: stack, base: base}, nil
}

// Commit keeps the transaction: the id is appended to the stack file (the
// commit point), then history and journal are updated. Past the layer
// limit the oldest layers are squashed (a failure there is only reported).
func (t *Txn) Commit() error {
	c := t.c
	cur, err := c.Stack()
	if err != nil {
		return err
	}
	if !slices.Equal(cur, t.stack) {
		return fmt.Errorf("transaction %s: the layer stack changed underneath it (%v, was %v)", t.j.ID, cur, t.stack)
	}
	committed := append(slices.Clone(t.base), t.j.ID)
	// One view of the base for the trim's plan and the drift records
	// (init-overlay's separate base, Rec.Base, is read directly).
	if c.Rec.Base == "" {
		if ns, err := newPrivateNS(c.targets()); err == nil {
			c.baseNS = ns
			defer func() { c.baseNS = nil; ns.Close() }()
		}
	}
	bytes, _ := layer.DiskUsage(c.L.Tree(t.j.ID))
	// What the trim after the commit point will take out of the layer
	// (trim.go). The history counts the layer as trimmed; when the
	// overlays turn out to be held, the trim waits (shared files move at
	// a later commit).
	plan, err := c.planTrim(committed, t.j.ID)
	if err != nil {
		c.say("warning: the package manager's logs and caches stay in layer %s: %v", t.j.ID, err)
		plan = nil
	} else {
		bytes = max(0, bytes-plan.bytes)
	}
	crash("commit-stack")
	if err := c.L.WriteStack(committed); err != nil {
		return fmt.Errorf("committing transaction %s: %w", t.j.ID, err)
	}
	crash("commit-history")
	if err := c.appendHistory(Entry{Event: "txn", ID: t.j.ID, Time: t.j.Time, Command: t.j.Command, Packages: t.j.Args, Bytes: bytes}); err != nil {
		c.say("warning: transaction %s committed but its history line was not written: %v", t.j.ID, err)
	}
	crash("commit-journal")
	if err := c.removeJournal(); err != nil {
		return err
	}
	for _, id := range t.stack[len(t.base):] {
		c.removeLayer(id, false) // the empty working layer left out at Begin
	}
	// A fresh working layer on top, so that changes made outside ovpkg
	// from now on do not land in this transaction's layer.
	var between func() error
	if plan != nil {
		between = func() error {
			if err := c.trim(plan, committed); err != nil {
				c.say("warning: %v", err)
			}
			return nil
		}
	}
	if err := c.addWorkingWith(committed, between); err != nil {
		c.say("warning: later changes outside ovpkg will land in layer %s: %v", t.j.ID, err)
	}
	if err := c.RecordBase(); err != nil {
		c.say("warning: recording the base files the card shadows: %v", err)
	}
	if n := len(committed) + 1; n > LayerLimit() {
		if err := c.AutoSquash(); err != nil {
			c.say("warning: %d layers; the automatic squash was not done: %v", n, err)
		}
	}
	return nil
}

// Abort drops the transaction: the live overlays go back onto the
// committed stack and the layer is deleted.
func (t *Txn) Abort() error {
	c := t.c
	if err := c.restackOnto(t.stack); err != nil {
		return fmt.Errorf("undoing transaction %s: %w (it stays mounted; ovpkg will drop it at the next command or ovmount)", t.j.ID, err)
	}
	crash("abort-restacked")
	if err := c.removeLayer(t.j.ID, false); err != nil {
		return err
	}
	return c.removeJournal()
}

// workingMark is the file that marks a working layer: the upper that
// takes changes made outside ovpkg between transactions.
const workingMark = "working"

func (c *Card) isWorking(id string) bool {
	_, err := c.L.Lstat(filepath.Join(c.L.LayerDir(id), workingMark))
	return err == nil
}

// markWorking writes the working mark into layer id (beneath the card's
// root).
func (c *Card) markWorking(id string) error {
	return c.L.WriteFile(filepath.Join(c.L.LayerDir(id), workingMark), nil, 0o644)
}

// emptyTree reports whether a layer tree holds nothing but empty
// directories.
func emptyTree(dir string) bool {
	empty := true
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			empty = false
			return filepath.SkipAll
		}
		return nil
	})
	return empty
}

// addWorking puts a new, empty working layer on top of stack: restack,
// then the stack file (a crash in between leaves a layer directory the
// stack does not list: removed by Recover).
func (c *Card) addWorking(stack []string) error { return c.addWorkingWith(stack, nil) }

// addWorkingWith is addWorking that runs between (if set) while the
// overlays are down, when they are free (see restackBetween).
func (c *Card) addWorkingWith(stack []string, between func() error) error {
	id, err := c.nextID()
	if err != nil {
		return err
	}
	if err := c.L.AddLayer(id, c.Rec.Dirs); err != nil {
		return err
	}
	if err := c.markWorking(id); err != nil {
		c.L.RemoveLayer(id, true)
		return err
	}
	syncDir(c.L.LayerDir(id))
	next := append(slices.Clone(stack), id)
	if err := c.restackBetween(next, between, false); err != nil {
		c.L.RemoveLayer(id, true)
		return err
	}
	crash("commit-working")
	if err := c.L.WriteStack(next); err != nil {
		if rerr := c.restack(stack); rerr == nil {
			c.L.RemoveLayer(id, true)
		}
		return err
	}
	return nil
}

// removeLayer deletes a layer directory after checking that no live
// overlay uses it. With needMark (a layer the stack does not list) the
// directory must carry ovpkg's mark (card.ErrNotMarked otherwise: kept).
// Deletion is beneath the card's root (card.RemoveLayer): no link is
// followed, no other filesystem entered.
func (c *Card) removeLayer(id string, needMark bool) error {
	tab, err := mount.Self()
	if err != nil {
		return err
	}
	if c.Rec.LayerInUse(id) {
		c.say("ovpkg: layer %s is kept until the old overlays that use it are released (it is deleted at a later command)", id)
		return nil
	}
	dir := c.L.LayerDir(id)
	for _, m := range tab {
		if m.FSType != "overlay" {
			continue
		}
		if strings.Contains(m.VFSOptions, dir+"/") {
			return fmt.Errorf("layer %s is still used by the overlay on %s; not deleting it", id, m.Mountpoint)
		}
	}
	if err := c.L.RemoveLayer(id, needMark); err != nil {
		return fmt.Errorf("deleting layer %s: %w", id, err)
	}
	return nil
}

// Run wraps fn (a package manager run) in a transaction: Begin, fn,
// Commit, or Abort when fn fails. When the overlays cannot be restacked
// because another process holds them, fn runs in the current top layer
// instead (said plainly, recorded as "untracked"). It takes the ovpkg
// lock (nested use by a caller that holds it is fine) and may re-execute
// the program from memory first (see LeaveMounts).
func Run(opt mountset.Options, command string, pkgs []string, fn func() error) error {
	if err := LeaveMounts(opt); err != nil {
		return err
	}
	unlock, err := mountset.Lock(opt)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := Open(opt)
	if err != nil {
		return err
	}
	return c.Do(command, pkgs, fn)
}

// Do is Run on an open card whose caller holds the lock.
func (c *Card) Do(command string, pkgs []string, fn func() error) error {
	if err := c.Recover(); err != nil {
		return err
	}
	t, err := c.Begin(command, pkgs)
	if errors.Is(err, mountset.ErrBusy) {
		top, _ := c.L.TopLayer()
		c.say("ovpkg: cannot give this %s its own layer: %v", command, err)
		c.say("ovpkg: it goes into the current top layer %s and cannot be rolled back on its own", top)
		if ferr := fn(); ferr != nil {
			return ferr
		}
		bytes, _ := layer.DiskUsage(c.L.Tree(top))
		c.appendHistory(Entry{Event: "untracked", ID: top, Time: time.Now().UTC(), Command: command, Packages: pkgs, Bytes: bytes,
			Note: "the overlays were busy; made in layer " + top})
		return nil
	}
	if err != nil {
		return err
	}
	crash("before-pm")
	if ferr := fn(); ferr != nil {
		if aerr := t.Abort(); aerr != nil {
			return fmt.Errorf("%w; %v", ferr, aerr)
		}
		return &UndoneError{ID: t.j.ID, Command: t.j.Command, Err: ferr}
	}
	return t.Commit()
}

// UndoneError is what Do returns when fn failed and its layer was dropped:
// the card is exactly as it was before the transaction.
type UndoneError struct {
	ID, Command string
	Err         error
}

func (e *UndoneError) Error() string {
	return fmt.Sprintf("%v; transaction %s (%s) undone: the card is as it was before", e.Err, e.ID, e.Command)
}

func (e *UndoneError) Unwrap() error { return e.Err }

// onStack says whether the recorded overlays are exactly those the stack
// implies (same layer list, and per directory the same upper and lowers).
// An interrupted restack can leave the record's layer list right but some
// directories on other layers (ovmount adopts what it finds mounted).
func (c *Card) onStack(stack []string) (bool, error) {
	if !slices.Equal(c.Rec.Layers, stack) {
		return false, nil
	}
	if len(stack) == 0 {
		return true, nil
	}
	want, err := c.mountsFor(stack)
	if err != nil {
		return false, err
	}
	have := map[string]overlay.Mount{}
	for _, m := range c.Rec.Overlays {
		have[filepath.Clean(m.Target)] = m
	}
	for _, w := range want {
		h, ok := have[filepath.Clean(w.Target)]
		if !ok || filepath.Clean(h.Upper) != filepath.Clean(w.Upper) || !slices.Equal(h.Lowers, w.Lowers) {
			return false, nil
		}
	}
	return true, nil
}

// Recover finishes or undoes what an interrupted command left: live
// overlays not on the committed stack are restacked onto it, layer
// directories the stack does not list are deleted, the journal is
// resolved. It says what it did. Safe to call at any time.
func (c *Card) Recover() error {
	if _, err := c.pruneDetached(); err != nil {
		return err
	}
	j, err := c.readJournal()
	if err != nil {
		// A journal ovpkg did not write (it is replaced atomically, so
		// never torn): nothing is recovered from it or deleted for it.
		return fmt.Errorf("%w; nothing recovered (if the card is yours and no ovpkg command was interrupted, remove %s)", err, c.journalPath())
	}
	stack, err := c.Stack()
	if err != nil {
		return err
	}
	tab, err := mount.Self()
	if err != nil {
		return err
	}
	onStack, err := c.onStack(stack)
	if err != nil {
		return err
	}
	if up := c.live(tab); len(up) > 0 && !onStack {
		if err := c.restackOnto(stack); err != nil {
			return fmt.Errorf("an interrupted transaction left the overlays on layers %v but the card's stack is %v, and they cannot be restacked now: %w", c.Rec.Layers, stack, err)
		}
		// Restacking while the old upper is held puts a fresh working
		// layer on top of the stack: read it again.
		if stack, err = c.Stack(); err != nil {
			return err
		}
	} else if len(up) == 0 && !slices.Equal(c.Rec.Layers, stack) && len(c.Rec.Overlays) > 0 {
		ms, err := c.mountsFor(stack)
		if err != nil {
			return err
		}
		c.setLayers(stack, ms)
		if err := c.writeRecord(); err != nil {
			return err
		}
	}
	dirs, err := c.layerDirs()
	if err != nil {
		return err
	}
	var garbage []string
	for _, id := range dirs {
		// A layer an old, detached overlay may still use as its upper is
		// deleted only once that overlay is gone.
		if !slices.Contains(stack, id) && !c.Rec.LayerInUse(id) {
			garbage = append(garbage, id)
		}
	}
	var removed []string
	for _, id := range garbage {
		if card.CheckID(id) != nil {
			c.say("ovpkg: kept %q in %s: not a layer name ovpkg makes (remove it by hand if it is garbage)", id, c.L.LayersDir())
			continue
		}
		err := c.removeLayer(id, true)
		var ce *card.Error
		if (errors.Is(err, card.ErrNotMarked) || errors.Is(err, card.ErrCorrupt)) && errors.As(err, &ce) {
			c.say("ovpkg: kept %s", ce)
			continue
		}
		if err != nil {
			return err
		}
		removed = append(removed, id)
	}
	if j != nil {
		inStack := slices.Contains(stack, j.ID)
		switch {
		case j.Op == "begin" && inStack:
			c.ensureHistory(j)
			c.say("ovpkg: transaction %s (%s) was committed before the interruption; its bookkeeping is finished now", j.ID, j.Command)
		case j.Op == "begin":
			c.say("ovpkg: transaction %s (%s) was interrupted; the card is as before it", j.ID, j.Command)
		case j.Op == "squash" && inStack:
			c.say("ovpkg: the squash into layer %s (%s) was interrupted after it took effect; the old layers are removed now", j.ID, j.Command)
		case j.Op == "squash":
			c.say("ovpkg: the squash (%s) was interrupted; the layers are as before it", j.Command)
		case j.Op == "rollback":
			if slices.Contains(stack, j.ID) {
				c.say("ovpkg: the rollback was interrupted; nothing was rolled back")
			} else {
				c.say("ovpkg: the rollback of %s was interrupted after it took effect; finished now", strings.Join(j.Args, " "))
			}
		default:
			c.say("ovpkg: an interrupted command's journal was cleared")
		}
		if err := c.removeJournal(); err != nil {
			return err
		}
	} else {
		for _, id := range removed {
			c.say("ovpkg: removed leftover layer %s (not in the card's stack)", id)
		}
	}
	return nil
}

// ensureHistory appends the history line of a committed transaction whose
// line a crash prevented.
func (c *Card) ensureHistory(j *Journal) {
	hist, _ := c.History()
	for _, e := range hist {
		if e.Event == "txn" && e.ID == j.ID {
			return
		}
	}
	bytes, _ := layer.DiskUsage(c.L.Tree(j.ID))
	c.appendHistory(Entry{Event: "txn", ID: j.ID, Time: j.Time, Command: j.Command, Packages: j.Args, Bytes: bytes, Note: "recorded after an interruption"})
}

// RecoverLayout is Recover for a card whose overlays are not mounted yet
// (ovmount, before stacking): it deletes layer directories the stack does
// not list and resolves the journal. out receives the messages.
func RecoverLayout(cardMount string, out func(string)) error {
	c := &Card{Rec: &mountset.Record{CardMount: cardMount}}
	l, err := openLayout(cardMount)
	if err != nil {
		return err
	}
	c.L = l
	c.Out = writerFunc(out)
	return c.Recover()
}

type writerFunc func(string)

func (w writerFunc) Write(b []byte) (int, error) {
	if w != nil {
		w(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}
