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
		Description: `Flushes the card filesystem (syncfs) while everything is still mounted, unmounts the overlays
(newest first), flushes again, unmounts the card, confirms the loop device is gone, and only
then prints "card is safe to remove".

While any process holds a file, working directory, root or mapping on an overlay or on the
card, eject refuses and leaves everything mounted and intact: one line per process says what
it holds (PID, command: cwd, exe, root, open files, mappings, with counts). It never falls
back to a lazy unmount. When eject itself lives under an overlaid directory such as /usr/bin
it re-executes from an in-memory copy so it does not pin /usr.

When the flush fails (writeback to the image failed, for example because the filesystem the
image lives on is full), eject names the files that were not written and unmounts nothing:
they still read correctly until the card is unmounted. The failure is remembered: the next
eject unmounts and detaches the card, marks it for checking (its superblock's errors bit) and
still says it is NOT safe, and so does every eject until the next ovmount has checked the
card with e2fsck. With --json a refusal is printed as JSON too (safe_to_remove false, the
holding processes or the failed flush).

Exit status: 0 safe to remove, 1 failure, busy or not completely written, 2 usage.`,
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
		return mountRefusal(c, c.App.Name, err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, struct {
			*mountset.Record
			SafeToRemove bool `json:"safe_to_remove"`
		}{rec, true})
	}
	return nil
}
