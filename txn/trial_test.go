package txn

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// offlineCard is a card with layers 0001, 0002 and 0004 (transactions)
// and 0003, 0005 (working; 0005 empty), as after two installs.
func offlineCard(t *testing.T) *Card {
	t.Helper()
	c := testCard(t)
	base := filepath.Join(t.TempDir(), "base")
	os.MkdirAll(filepath.Join(base, "usr"), 0o755)
	c.Rec.Root, c.Rec.Base = "/nonexistent-root", base
	for _, id := range []string{"0002", "0003", "0004", "0005"} {
		if err := c.L.AddLayer(id, c.Rec.Dirs); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"0003", "0005"} {
		os.WriteFile(filepath.Join(c.L.LayerDir(id), workingMark), nil, 0o644)
	}
	os.WriteFile(filepath.Join(c.L.Upper("0002", "usr"), "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(c.L.Upper("0003", "usr"), "edit"), []byte("kept"), 0o644)
	os.WriteFile(filepath.Join(c.L.Upper("0004", "usr"), "b"), []byte("b"), 0o644)
	if err := c.L.WriteStack([]string{"0001", "0002", "0003", "0004", "0005"}); err != nil {
		t.Fatal(err)
	}
	return OfflineCard(c.L, c.Rec, os.Stderr)
}

func TestTrialConfirmed(t *testing.T) {
	c := offlineCard(t)
	if out, err := c.BootTrial(); err != nil || out.State != TrialNone {
		t.Fatalf("no trial: %+v %v", out, err)
	}
	tr, old, err := c.Try(1, 2)
	if err != nil || old != nil || !slices.Equal(tr.Layers, []string{"0004"}) {
		t.Fatalf("Try: %+v %+v %v", tr, old, err)
	}
	if _, err := c.Confirm(false); !errors.Is(err, ErrNotBooted) {
		t.Errorf("Confirm before a boot: %v", err)
	}
	for boot := 1; boot <= 2; boot++ {
		out, err := c.BootTrial()
		if err != nil || out.State != TrialOn || out.Trial.Boots != boot {
			t.Fatalf("boot %d: %+v %v", boot, out, err)
		}
	}
	if tr, err := c.Confirm(false); err != nil || !slices.Equal(tr.Layers, []string{"0004"}) {
		t.Fatalf("Confirm: %+v %v", tr, err)
	}
	if _, err := c.Confirm(false); !errors.Is(err, ErrNothingToDo) {
		t.Errorf("second Confirm: %v", err)
	}
	if out, _ := c.BootTrial(); out.State != TrialNone {
		t.Errorf("after confirm: %+v", out)
	}
	if st, _ := c.Stack(); !slices.Equal(st, []string{"0001", "0002", "0003", "0004", "0005"}) {
		t.Errorf("stack after a confirmed trial: %v", st)
	}
}

func TestTrialDropped(t *testing.T) {
	c := offlineCard(t)
	if _, _, err := c.Try(2, 1); err != nil {
		t.Fatal(err)
	}
	if out, err := c.BootTrial(); err != nil || out.State != TrialOn {
		t.Fatalf("first boot: %+v %v", out, err)
	}
	// No confirmation: the next boot rolls 0002 and 0004 back; the
	// working layer with an edit (0003) stays, the empty one goes.
	out, err := c.BootTrial()
	if err != nil || out.State != TrialDropped || !slices.Equal(out.Dropped, []string{"0002", "0004"}) {
		t.Fatalf("second boot: %+v %v", out, err)
	}
	st, _ := c.Stack()
	if !slices.Equal(st, []string{"0001", "0003"}) {
		t.Errorf("stack after the drop: %v", st)
	}
	for _, id := range []string{"0002", "0004", "0005"} {
		if _, err := os.Stat(c.L.LayerDir(id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("layer %s still on the card", id)
		}
	}
	if tr, _ := ReadTrial(c.L); tr != nil {
		t.Errorf("trial left: %+v", tr)
	}
	h, _ := c.History()
	var ts []string
	for _, e := range h {
		ts = append(ts, e.Event)
	}
	if !slices.Contains(ts, "trial-dropped") || !slices.Contains(ts, "trial") {
		t.Errorf("history events: %v", ts)
	}
}

func TestTrialStaleAndDamaged(t *testing.T) {
	c := offlineCard(t)
	if _, _, err := c.Try(3, 1); !errors.Is(err, ErrRollbackPast) {
		t.Errorf("Try(3) with 2 transactions: %v", err)
	}
	if _, _, err := c.Try(1, 1); err != nil {
		t.Fatal(err)
	}
	// The trial's layer goes away (rollback at run time).
	if _, err := c.Rollback(1); err != nil {
		t.Fatal(err)
	}
	if out, err := c.BootTrial(); err != nil || out.State != TrialStale {
		t.Errorf("stale: %+v %v", out, err)
	}
	os.WriteFile(trialPath(c.L), []byte(`{"layers":[],"max_boots":0}`), 0o644)
	if _, err := c.BootTrial(); err == nil {
		t.Error("a damaged trial file was accepted")
	}
}
