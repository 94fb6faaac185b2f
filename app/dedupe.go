package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"
	"github.com/ovpkg/ovpkg/internal/units"
)

func dedupeCommand() *cli.Command {
	return &cli.Command{
		Name:      "dedupe",
		Usage:     "remove from the card every file identical to what the base has at the same path",
		UsageText: "ovpkg dedupe [--config FILE] [--root DIR] [--json]",
		Description: `Removes from the card's layers each regular file and symbolic link that is identical
(content, mode, owner, extended attributes) to what the base (and the layers below) show at
the same path, and directories left empty that the base has alike; reports the bytes freed.
Whiteouts and opaque directories are never touched, so the merged view does not change. The
overlays are unmounted meanwhile, so nothing may hold a file on them. Refused when the card
is not mounted.

Exit status: 0 ok, 1 failure, 2 usage.`,
		Flags:  txnFlags(),
		Action: dedupeAction,
	}
}

func dedupeAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("dedupe takes no arguments")
	}
	e, err := openTxn(c, true)
	if err != nil {
		return err
	}
	defer e.close()
	st, err := e.card.Dedupe()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"files": st.Files, "dirs": st.Dirs, "bytes_freed": st.Bytes})
	}
	e.say("removed %d files and %d directories identical to the base; %s freed", st.Files, st.Dirs, units.Bytes(st.Bytes))
	return nil
}
