package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

// packageCommands are ovpkg's package verbs (issue 4), plus the hidden
// helpers the binary re-executes itself as.
func packageCommands() []*cli.Command {
	return []*cli.Command{
		installCommand(),
		removeCommand(),
		listCommand(),
		filesCommand(),
		statusCommand(),
		updateCommand(),
		upgradeCommand(),
		configureCommand(),
		pmCommand(),
		pmInitCommand(),
		readBaseCommand(),
	}
}

// pmInitCommand is the init of the package manager's PID namespace
// (pkgmgr.Run starts /proc/self/exe __pm-init -- ARGV...).
func pmInitCommand() *cli.Command {
	return &cli.Command{
		Name: pkgmgr.InitArg, Hidden: true, SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			if code := pkgmgr.InitMain(c.Args().Slice()); code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}
