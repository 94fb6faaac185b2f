package app

import (
	"errors"
	"strings"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/txn"
)

func rebaseCommand() *cli.Command {
	return &cli.Command{
		Name:      "rebase",
		Usage:     "merge base changes into the files the card shadows (status, passwd, group, shadow, conffiles)",
		UsageText: "ovpkg rebase [--check] [--config FILE] [--root DIR] [--json]",
		Description: `When the base root changed after the card copied one of its files (the package
database, passwd, group, shadow, gshadow, a conffile), the card's copy hides the change.
rebase --check lists such files. rebase merges them three ways (the base when the card
copied it, the base now, the card's version): the package status by package stanza,
passwd/group/shadow by entry, other files line by line. Where both sides changed the same
entry or lines, it refuses with the list and changes nothing. The merge is written as a
transaction ("rebase"), so it can be rolled back.

Exit status: 0 ok (or nothing to do), 1 failure or conflicts, 2 usage.`,
		Flags:  txnFlags(&cli.BoolFlag{Name: "check", Usage: "only list the files whose base changed"}),
		Action: rebaseAction,
	}
}

func rebaseAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("rebase takes no arguments")
	}
	e, err := openTxn(c, !c.Bool("check"))
	if err != nil {
		return err
	}
	defer e.close()
	drift, err := e.card.Drift()
	if err != nil {
		return err
	}
	if c.Bool("check") {
		if c.Bool("json") {
			if drift == nil {
				drift = []txn.Drift{}
			}
			return printJSON(c.App.Writer, map[string]any{"drift": drift})
		}
		if len(drift) == 0 {
			e.say("the base has not changed under the card")
			return nil
		}
		for _, d := range drift {
			e.say("/%s changed in the base since the card copied it (merge: %s)", d.Path, d.Merger)
		}
		e.say("run `ovpkg rebase` to merge")
		return nil
	}
	res, err := e.card.Rebase()
	if errors.Is(err, txn.ErrNothingToDo) {
		if c.Bool("json") {
			return printJSON(c.App.Writer, map[string]any{"merged": []string{}})
		}
		e.say("the base has not changed under the card; nothing to merge")
		return nil
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"merged": res.Merged, "notes": res.Notes})
	}
	for _, n := range res.Notes {
		e.say("note: %s", n)
	}
	if len(res.Merged) == 0 {
		e.say("the base changes needed no change on the card; recorded")
	} else {
		e.say("merged the base's changes into %s", strings.Join(res.Merged, ", "))
	}
	return nil
}
