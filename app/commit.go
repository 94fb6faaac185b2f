package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"
)

func commitCommand() *cli.Command {
	return &cli.Command{
		Name:      "commit",
		Usage:     "squash all the card's layers into one (keeping whiteouts and opaque directories)",
		UsageText: "ovpkg commit [--config FILE] [--root DIR] [--json]",
		Description: `Merges every layer of the card into one new layer, with overlay semantics: files
removed from the base stay hidden (whiteouts), replaced directories stay opaque. The new
layer is built beside the old ones with hard links (little space), the layer stack is then
switched atomically, and only then are the old layers deleted: a full card or an
interruption loses nothing. Afterwards the earlier transactions can no longer be rolled back
one by one. The overlays are remounted, so nothing may hold a file on them.

Exit status: 0 ok, 1 failure (nothing changed), 2 usage.`,
		Flags:  txnFlags(),
		Action: commitAction,
	}
}

func commitAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("commit takes no arguments")
	}
	e, err := openTxn(c, true)
	if err != nil {
		return err
	}
	defer e.close()
	before, _ := e.card.Stack()
	id, err := e.card.SquashAll()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"squashed": before, "into": id})
	}
	e.say("squashed %d layers into layer %s", len(before), id)
	return nil
}
