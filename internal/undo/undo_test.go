package undo

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRunNewestFirstJoinsEveryFailure(t *testing.T) {
	var order []string
	e1, e2 := errors.New("busy"), errors.New("gone")
	var l List
	l.AddUnlessFailed("removing the record", func() error { order = append(order, "record"); return nil })
	l.Add("detaching /dev/loop3", func() error { order = append(order, "loop"); return e2 })
	l.Add("unmounting /overlay", func() error { order = append(order, "card"); return e1 })
	err := Join(errors.New("mount failed"), &l)
	if want := []string{"card", "loop"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("order %v, want %v (the record kept after a failure)", order, want)
	}
	if !errors.Is(err, e1) || !errors.Is(err, e2) {
		t.Fatalf("failures not joined: %v", err)
	}
	msg := err.Error()
	for _, s := range []string{"mount failed; undoing it failed too: unmounting /overlay: busy; detaching /dev/loop3: gone", "not done: removing the record"} {
		if !strings.Contains(msg, s) {
			t.Errorf("%q lacks %q", msg, s)
		}
	}
	if strings.Contains(msg, "\n") || l.Len() != 0 {
		t.Errorf("not one line or list not emptied: %q", msg)
	}
}

func TestRunAllGood(t *testing.T) {
	var l List
	ran := 0
	l.Add("a", func() error { ran++; return nil })
	l.AddUnlessFailed("b", func() error { ran++; return nil })
	base := errors.New("x")
	if err := Join(base, &l); err != base || ran != 2 {
		t.Fatalf("err %v ran %d", err, ran)
	}
	l.Add("c", func() error { t.Fatal("discarded step ran"); return nil })
	l.Discard()
	if err := l.Run(); err != nil {
		t.Fatal(err)
	}
}
