package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/mountset"
)

func uovmountCommand() *cli.Command {
	return &cli.Command{
		Name:      "uovmount",
		Aliases:   []string{"umount"},
		Usage:     "remove the overlays; the card stays mounted",
		UsageText: "uovmount [--config FILE] [--root DIR] [--json]",
		Description: `Unmounts the overlays ovmount recorded in RUN_DIR/mounts.json, newest first. The card
stays mounted on MOUNTPOINT and attached; ovmount stacks the overlays again, eject removes it.

Refuses, unmounting nothing, while a process holds a file, working directory or mapping on an
overlay: one line per process says what it holds (with --json: as JSON on stdout). If the running uovmount itself lives
under an overlaid directory it re-executes from memory first.

Exit status: 0 unmounted, 1 failure or busy (everything left as it was), 2 usage.`,
		Flags:  []cli.Flag{configFlag, rootFlag, jsonFlag},
		Action: uovmountAction,
	}
}

func uovmountAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("uovmount takes no arguments (got %q)", c.Args().First())
	}
	rec, err := mountset.Down(mountsetOptions(c))
	if err != nil {
		return mountRefusal(c, c.App.Name, err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, rec)
	}
	return nil
}
