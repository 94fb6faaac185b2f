package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func upgradeCommand() *cli.Command {
	return &cli.Command{
		Name:      "upgrade",
		Usage:     "upgrade packages (all, or the named ones); new versions land on the card",
		UsageText: "ovpkg upgrade [--yes] [PKG...]",
		Description: `Works out the upgrade (apt-get -s upgrade, or install --only-upgrade PKG...), checks the
card's free space against the new versions' installed size (an upgraded base package is copied
whole onto the card), fetches and lists the archives, refuses paths outside the overlays, then
runs the package manager as install does.

Exit status: 0 upgraded (or nothing to do), 1 failure, 2 usage.`,
		Flags: pkgFlags(yesFlag, noSpaceCheckFlag),
		Action: func(c *cli.Context) error {
			return plannedChange(c, pkgmgr.OpUpgrade, c.Args().Slice())
		},
	}
}
