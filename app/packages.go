package app

import (
	"os"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgflow"
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

// readBaseCommand is the hidden child pkgflow runs to read a base file
// below an overlay (pkgflow.ReadBaseMain).
func readBaseCommand() *cli.Command {
	return &cli.Command{
		Name: pkgflow.ReadBaseArg, Hidden: true, SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			code, err := pkgflow.ReadBaseMain(c.Args().Slice(), os.Stdin, c.App.Writer)
			if err != nil {
				return err
			}
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}
