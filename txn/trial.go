package txn

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/mountset"
)

// Try-boot (ovpkg boot try / boot ok, and init-overlay at each boot).
// The state lives on the card, <card>/ovpkg/trial, so that it travels
// with the layers it names and needs no bootloader.

// ErrNotBooted says a trial has not been booted yet, so there is nothing
// a boot could have confirmed.
var ErrNotBooted = errors.New("the trial has not been booted yet")

// Trial is the try-boot state on a card.
type Trial struct {
	Layers   []string  `json:"layers"`    // transaction layers on trial, oldest first
	MaxBoots int       `json:"max_boots"` // boots that may start with them unconfirmed
	Boots    int       `json:"boots"`     // boots started with them so far (counted by init-overlay)
	Marked   time.Time `json:"marked"`
}

// Trial outcomes at boot.
const (
	TrialNone    = "none"     // nothing on trial
	TrialOn      = "on-trial" // stacked for this boot, counted
	TrialDropped = "dropped"  // not confirmed within MaxBoots: rolled back now
	TrialStale   = "stale"    // its layers are gone (rolled back, squashed): forgotten
)

// MaxTrialBoots bounds --boots.
const MaxTrialBoots = 100

func trialPath(l *card.Layout) string { return filepath.Join(l.Top(), "trial") }

// ReadTrial returns the card's trial, or nil when there is none. A
// damaged file is an error naming it (the card is untrusted input).
func ReadTrial(l *card.Layout) (*Trial, error) {
	b, err := os.ReadFile(trialPath(l))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var t Trial
	if len(b) > 64*1024 || json.Unmarshal(b, &t) != nil || len(t.Layers) == 0 || t.MaxBoots < 1 || t.MaxBoots > MaxTrialBoots || t.Boots < 0 {
		return nil, &card.Error{Path: trialPath(l), Msg: "the try-boot state is damaged (remove it to forget the trial)", Err: card.ErrCorrupt}
	}
	return &t, nil
}

func writeTrial(l *card.Layout, t *Trial) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return writeAtomic(trialPath(l), append(b, '\n'))
}

func removeTrial(l *card.Layout) error {
	if err := os.Remove(trialPath(l)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(l.Top())
}

// txnLayers returns the transaction layers of stack above the bottom one
// (working layers left out), oldest first.
func (c *Card) txnLayers(stack []string) []string {
	var out []string
	for _, id := range stack[1:] {
		if !c.isWorking(id) {
			out = append(out, id)
		}
	}
	return out
}

// Try puts the newest n transactions on trial for the next boots: unless
// a booted system confirms them (Confirm) within boots boots,
// init-overlay rolls them back at the boot after. A trial already set is
// replaced (the previous one is returned too).
func (c *Card) Try(n, boots int) (t, old *Trial, err error) {
	if n < 1 {
		return nil, nil, fmt.Errorf("boot try: N must be at least 1")
	}
	if boots < 1 || boots > MaxTrialBoots {
		return nil, nil, fmt.Errorf("boot try: --boots must be 1..%d", MaxTrialBoots)
	}
	stack, err := c.Stack()
	if err != nil {
		return nil, nil, err
	}
	txns := c.txnLayers(stack)
	if n > len(txns) {
		if len(txns) == 0 {
			return nil, nil, fmt.Errorf("%w: the card has no transaction above its bottom layer %s to put on trial", ErrRollbackPast, stack[0])
		}
		return nil, nil, fmt.Errorf("%w: the card has %d transaction layer(s); at most %d can be put on trial", ErrRollbackPast, len(txns), len(txns))
	}
	old, _ = ReadTrial(c.L)
	t = &Trial{Layers: slices.Clone(txns[len(txns)-n:]), MaxBoots: boots, Marked: time.Now().UTC()}
	if err := writeTrial(c.L, t); err != nil {
		return nil, old, err
	}
	c.appendHistory(Entry{Event: "trial", Time: t.Marked, Layers: t.Layers, Note: fmt.Sprintf("on trial for %d boot(s)", boots)})
	return t, old, nil
}

// Confirm ends the trial: its layers stay. ErrNothingToDo when there is
// none; ErrNotBooted when it has not been booted yet (a confirmation from
// the boot that set it would prove nothing).
func (c *Card) Confirm(force bool) (*Trial, error) {
	t, err := ReadTrial(c.L)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, ErrNothingToDo
	}
	if t.Boots == 0 && !force {
		return t, ErrNotBooted
	}
	if err := removeTrial(c.L); err != nil {
		return t, err
	}
	c.appendHistory(Entry{Event: "trial-confirmed", Time: time.Now().UTC(), Layers: t.Layers})
	return t, nil
}

// TrialOutcome is what BootTrial did.
type TrialOutcome struct {
	State   string   // TrialNone, TrialOn, TrialDropped, TrialStale
	Trial   *Trial   // the trial (after counting this boot)
	Dropped []string // layers rolled back (TrialDropped)
}

// OfflineCard is a card whose overlays are not mounted (init-overlay,
// before it stacks them): rec says where they will go.
func OfflineCard(l *card.Layout, rec *mountset.Record, out io.Writer) *Card {
	if out == nil {
		out = io.Discard
	}
	return &Card{Rec: rec, L: l, Out: out}
}

// BootTrial is init-overlay's step at each boot, before the overlays are
// stacked: a trial that has had its boots is rolled back (every
// transaction layer from its oldest layer up; working layers with changes
// stay, as with rollback), otherwise this boot is counted. The count is
// written before the system starts, so a boot that hangs still counts.
func (c *Card) BootTrial() (*TrialOutcome, error) {
	t, err := ReadTrial(c.L)
	if err != nil || t == nil {
		return &TrialOutcome{State: TrialNone}, err
	}
	stack, err := c.Stack()
	if err != nil {
		return nil, err
	}
	txns := c.txnLayers(stack)
	first := -1
	for i, id := range txns {
		if slices.Contains(t.Layers, id) {
			first = i
			break
		}
	}
	if first < 0 {
		if err := removeTrial(c.L); err != nil {
			return nil, err
		}
		c.appendHistory(Entry{Event: "trial-stale", Time: time.Now().UTC(), Layers: t.Layers, Note: "layers no longer in the stack"})
		return &TrialOutcome{State: TrialStale, Trial: t}, nil
	}
	if t.Boots < t.MaxBoots {
		t.Boots++
		if err := writeTrial(c.L, t); err != nil {
			return nil, fmt.Errorf("counting the trial boot: %w", err)
		}
		return &TrialOutcome{State: TrialOn, Trial: t}, nil
	}
	dropped, err := c.Rollback(len(txns) - first)
	if err != nil {
		return nil, fmt.Errorf("rolling back the unconfirmed trial %v: %w", t.Layers, err)
	}
	if err := removeTrial(c.L); err != nil {
		return nil, err
	}
	c.appendHistory(Entry{Event: "trial-dropped", Time: time.Now().UTC(), Layers: dropped, Note: fmt.Sprintf("not confirmed within %d boot(s)", t.MaxBoots)})
	return &TrialOutcome{State: TrialDropped, Trial: t, Dropped: dropped}, nil
}
