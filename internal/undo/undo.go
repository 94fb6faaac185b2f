// Package undo is the undo list of a multi-step operation (ovmount,
// flatten): each step that changed something adds how to take it back;
// on failure the list runs newest first, every step even after one
// fails, and every failure is joined into the returned error. A step
// added with AddUnlessFailed (the record of what is mounted, say) runs
// only when every step run before it succeeded, so that it is kept
// exactly while something it names may still be there.
//
// It does not decide what a step does or retry it.
package undo

import (
	"fmt"
	"strings"
)

type step struct {
	what        string
	fn          func() error
	unlessError bool
}

// List is one operation's undo steps, oldest first.
type List struct {
	steps []step
}

// Add records how to take back a step: what says it in a message
// ("unmounting /overlay").
func (l *List) Add(what string, fn func() error) { l.steps = append(l.steps, step{what: what, fn: fn}) }

// AddUnlessFailed is Add for a step that must run only when every step
// run before it (the newer ones) succeeded; otherwise it is skipped and
// the error says so ("kept: ...").
func (l *List) AddUnlessFailed(what string, fn func() error) {
	l.steps = append(l.steps, step{what: what, fn: fn, unlessError: true})
}

// Len is the number of steps.
func (l *List) Len() int { return len(l.steps) }

// Discard forgets every step (the operation succeeded).
func (l *List) Discard() { l.steps = nil }

// Run takes every step back, newest first, and empties the list. It
// returns nil when all succeeded, else an *Error.
func (l *List) Run() error {
	var e Error
	for i := len(l.steps) - 1; i >= 0; i-- {
		s := l.steps[i]
		if s.unlessError && len(e.Failed) > 0 {
			e.Kept = append(e.Kept, s.what)
			continue
		}
		if err := s.fn(); err != nil {
			e.Failed = append(e.Failed, StepError{What: s.what, Err: err})
		}
	}
	l.steps = nil
	if len(e.Failed) == 0 {
		return nil
	}
	return &e
}

// StepError is one failed undo step.
type StepError struct {
	What string
	Err  error
}

func (s StepError) Error() string { return s.What + ": " + s.Err.Error() }
func (s StepError) Unwrap() error { return s.Err }

// Error lists the undo steps that failed, and those skipped because of
// them.
type Error struct {
	Failed []StepError
	Kept   []string
}

func (e *Error) Error() string {
	var parts []string
	for _, f := range e.Failed {
		parts = append(parts, f.Error())
	}
	s := "undoing it failed too: " + strings.Join(parts, "; ")
	if len(e.Kept) > 0 {
		s += " (so not done: " + strings.Join(e.Kept, "; ") + ")"
	}
	return s
}

func (e *Error) Unwrap() []error {
	var out []error
	for _, f := range e.Failed {
		out = append(out, f)
	}
	return out
}

// Join returns err with the result of running l: err itself when the
// undo worked, else one error (one line) that wraps both.
func Join(err error, l *List) error {
	if uerr := l.Run(); uerr != nil {
		return &joined{err: err, undo: uerr}
	}
	return err
}

type joined struct{ err, undo error }

func (j *joined) Error() string   { return fmt.Sprintf("%v; %v", j.err, j.undo) }
func (j *joined) Unwrap() []error { return []error{j.err, j.undo} }
