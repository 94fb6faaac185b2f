package app

import (
	"strings"

	"github.com/ovpkg/ovpkg/internal/cli"
)

func rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:      "rollback",
		Usage:     "drop the newest N transactions (default 1), live, without a reboot",
		UsageText: "ovpkg rollback [--config FILE] [--root DIR] [--json] [N]",
		Description: `Drops the newest N layers of the card: the overlays are remounted without them, then
the layers are deleted. Processes that hold files on the overlays keep the old view until they
exit (ovpkg names them; the old overlays are detached, and eject waits for them); a layer such
a process may still write to is deleted only once it is free. The bottom layer, which holds what the card had before the first transaction (or
what commit squashed together), cannot be rolled back.

Exit status: 0 ok, 1 failure (nothing changed), 2 usage.`,
		Flags:  txnFlags(),
		Action: rollbackAction,
	}
}

func rollbackAction(c *cli.Context) error {
	n, err := countArg(c, "rollback")
	if err != nil {
		return err
	}
	e, err := openTxn(c, true)
	if err != nil {
		return err
	}
	defer e.close()
	dropped, err := e.card.Rollback(n)
	if err != nil {
		return err
	}
	stack, _ := e.card.Stack()
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"dropped": dropped, "stack": stack})
	}
	e.say("rolled back layer(s) %s; layers now: %s", strings.Join(dropped, " "), strings.Join(stack, " "))
	return nil
}
