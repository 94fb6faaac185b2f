package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func configureCommand() *cli.Command {
	return &cli.Command{
		Name:      "configure",
		Usage:     "finish configuring packages an interrupted run left half-done (dpkg --configure -a)",
		UsageText: "ovpkg configure",
		Flags:     pkgFlags(),
		Action:    passThrough(pkgmgr.OpConfigure, "configuring"),
	}
}
