package app

import (
	"errors"
	"fmt"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/mountset"
)

// refusalJSON is what eject and uovmount print with --json when they
// refuse or when the card was not completely written.
type refusalJSON struct {
	SafeToRemove bool                   `json:"safe_to_remove"`
	Error        string                 `json:"error"`
	Busy         []busy.Process         `json:"busy,omitempty"`
	FlushFailed  *mountset.FlushFailure `json:"flush_failed,omitempty"`
}

// mountRefusal prints a busy refusal of eject or uovmount as one header
// line and one line per holding process (or, with --json, as JSON on
// stdout), and a failed flush as JSON with --json. Other errors are
// returned unchanged for report().
func mountRefusal(c *cli.Context, name string, err error) error {
	var be *mountset.BusyError
	var fe *mountset.FlushError
	isBusy := errors.As(err, &be)
	isFlush := errors.As(err, &fe)
	if c.Bool("json") && (isBusy || isFlush) {
		r := refusalJSON{Error: err.Error()}
		if isBusy {
			r.Error, r.Busy = be.Header(), be.Processes()
		}
		if isFlush {
			r.FlushFailed = &fe.Failure
		}
		if perr := printJSON(c.App.Writer, r); perr != nil {
			return perr
		}
		return err
	}
	if isBusy {
		fmt.Fprintf(c.App.ErrWriter, "%s: %s:\n", name, be.Header())
		for _, l := range be.Lines() {
			fmt.Fprintf(c.App.ErrWriter, "  %s\n", l)
		}
		return cli.Exit("", ExitFailure)
	}
	return err
}
