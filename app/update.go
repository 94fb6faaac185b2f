package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func updateCommand() *cli.Command {
	return &cli.Command{
		Name:      "update",
		Usage:     "refresh the package lists (kept on the card)",
		UsageText: "ovpkg update",
		Flags:     pkgFlags(),
		Action:    passThrough(pkgmgr.OpUpdate, "updating the package lists"),
	}
}
