package txn

import (
	"errors"
	"fmt"
	"io"

	"github.com/ovpkg/ovpkg/mountset"
)

// AfterMount is what ovmount runs once the card and overlays are up:
// finish or undo what an interrupted transaction left (Recover, with its
// message) and report watched base files that changed under the card
// (drift). It takes the ovpkg lock (nested use is fine). A drift check
// that cannot run is reported, not fatal.
func AfterMount(opt mountset.Options, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	unlock, err := mountset.Lock(opt)
	if err != nil {
		return err
	}
	defer unlock()
	opt.Out = out
	c, err := Open(opt)
	if errors.Is(err, ErrNoCard) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.Recover(); err != nil {
		return err
	}
	drift, err := c.Drift()
	if err != nil {
		fmt.Fprintf(out, "ovpkg: could not check the base for changes under the card: %v\n", err)
		return nil
	}
	for _, d := range drift {
		fmt.Fprintf(out, "ovpkg: /%s changed in the base since the card copied it; the card's copy hides the change (run `ovpkg rebase --check`, then `ovpkg rebase`)\n", d.Path)
	}
	return nil
}
