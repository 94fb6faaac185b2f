package app

import (
	"github.com/urfave/cli/v2"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func upgradeCommand() *cli.Command {
	return &cli.Command{
		Name:      "upgrade",
		Usage:     "upgrade packages (all, or the named ones); new versions land on the card",
		UsageText: "ovpkg upgrade [--yes] [PKG...]",
		Flags:     pkgFlags(yesFlag),
		Action:    passThrough(pkgmgr.OpUpgrade, "upgrading"),
	}
}
