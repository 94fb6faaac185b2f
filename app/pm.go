package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func pmCommand() *cli.Command {
	return &cli.Command{
		Name:      "pm",
		Usage:     "run the package manager with your own arguments, with the card mounted and ovpkg's safety net",
		UsageText: "ovpkg pm -- ARGS...   (apt-get ARGS, opkg ARGS or apk ARGS)",
		Flags:     pkgFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("pm: give the package manager's arguments after --")
			}
			return passThrough(pkgmgr.OpRaw, "running the package manager")(c)
		},
	}
}
