package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/mountset"
)

func ejectCommand() *cli.Command {
	return &cli.Command{
		Name:      "eject",
		Usage:     "unmount everything and detach the card so it can be removed",
		UsageText: "eject [--config FILE] [--root DIR] [--json]   (also: ovpkg eject)",
		Description: `Unmounts the overlays (newest first), flushes the card filesystem (syncfs; an error is
reported and the card is then NOT declared safe), unmounts the card, confirms the loop device
is gone, and only then prints "card is safe to remove".

While any process holds a file, working directory, root or mapping on an overlay or on the
card, eject refuses, names each one (PID, command, path) and leaves everything mounted and
intact. It never falls back to a lazy unmount. When eject itself lives under an overlaid
directory such as /usr/bin it re-executes from an in-memory copy so it does not pin /usr.

Exit status: 0 safe to remove, 1 failure or busy, 2 usage.`,
		Flags:  []cli.Flag{configFlag, rootFlag, jsonFlag},
		Action: ejectAction,
	}
}

func ejectAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("eject takes no arguments (got %q); it ejects the card named in the config", c.Args().First())
	}
	rec, err := mountset.Eject(mountsetOptions(c))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, struct {
			*mountset.Record
			SafeToRemove bool `json:"safe_to_remove"`
		}{rec, true})
	}
	return nil
}
