package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func removeCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove packages that live on the card",
		UsageText: "ovpkg remove [--yes] [--purge] [--force] PKG...",
		Description: `Removes packages installed on the card, with every package that depends on them, as one
transaction. It shows what goes and asks once, as install does (--yes: no question; without a
terminal it refuses without --yes). A package that is part of the base root (in the base's own
package database) is refused: removing it through the overlay would leave whiteouts on the
card that hide the base's files. --force removes it anyway.

Exit status: 0 removed, 1 failure, refused or not confirmed, 2 usage.`,
		Flags: pkgFlags(yesFlag,
			&cli.BoolFlag{Name: "purge", Usage: "remove configuration files too"},
			&cli.BoolFlag{Name: "force", Usage: "remove packages of the base root too (leaves whiteouts on the card)"}),
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			if len(args) == 0 {
				return usagef("remove: name at least one package")
			}
			if err := checkArgs("remove", args); err != nil {
				return err
			}
			op := pkgmgr.OpRemove
			if c.Bool("purge") {
				op = pkgmgr.OpPurge
			}
			return change(c, op, args)
		},
	}
}
