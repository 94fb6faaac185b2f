package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"
	"strconv"

	"github.com/ovpkg/ovpkg/config"
)

// Flags shared by several commands.
var (
	configFlag = &cli.StringFlag{
		Name:    "config",
		Usage:   "configuration `FILE` (default $" + config.EnvVar + " or " + config.DefaultPath + ")",
		EnvVars: nil,
	}
	rootFlag = &cli.StringFlag{
		Name:  "root",
		Value: "/",
		Usage: "overlay the directories of this root `DIR` instead of /",
	}
	jsonFlag = &cli.BoolFlag{
		Name:  "json",
		Usage: "print machine-readable JSON",
	}
)

// countArg is the optional positive count N of `rollback [N]` and
// `boot try [N]` (default 1); anything else is a usage error naming verb.
func countArg(c *cli.Context, verb string) (int, error) {
	switch c.NArg() {
	case 0:
		return 1, nil
	case 1:
		v, err := strconv.Atoi(c.Args().First())
		if err != nil || v < 1 {
			return 0, usagef("%s: N must be a positive number, not %q", verb, c.Args().First())
		}
		return v, nil
	}
	return 0, usagef("%s takes at most one argument (N)", verb)
}
