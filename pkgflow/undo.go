package pkgflow

import (
	"errors"
	"fmt"
)

// undoList is the verb's one undo list: each step that changed something
// pushes how to take it back; on failure they run newest first and every
// failure is kept.
type undoList struct {
	steps []undoStep
}

type undoStep struct {
	what string
	fn   func() error
}

func (u *undoList) push(what string, fn func() error) {
	u.steps = append(u.steps, undoStep{what, fn})
}

// run undoes every step, newest first, and joins the failures ("undoing
// WHAT: ERR"). The list is empty afterwards.
func (u *undoList) run() error {
	var errs []error
	for i := len(u.steps) - 1; i >= 0; i-- {
		if err := u.steps[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("undoing %s: %w", u.steps[i].what, err))
		}
	}
	u.steps = nil
	return errors.Join(errs...)
}

// forget drops the steps: what they did stays (the verb succeeded).
func (u *undoList) forget() { u.steps = nil }
