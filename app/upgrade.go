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
		Description: `Works out the upgrade (apt-get --print-uris upgrade, or install --only-upgrade PKG...),
shows it (packages, download size, space needed on the card: an upgraded base package is
copied whole onto the card) and asks once, then runs the package manager in a transaction as
install does.

Exit status: 0 upgraded (or nothing to do), 1 failure or not confirmed, 2 usage.`,
		Flags: pkgFlags(append([]cli.Flag{yesFlag}, testInstallFlags...)...),
		Action: func(c *cli.Context) error {
			if err := checkArgs("upgrade", c.Args().Slice()); err != nil {
				return err
			}
			return change(c, pkgmgr.OpUpgrade, c.Args().Slice())
		},
	}
}
