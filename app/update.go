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

// passThrough runs op through the package manager with the same safety
// net as install: the lock, the card mounted, the PID namespace, the
// policy-rc.d.
func passThrough(op pkgmgr.Op, what string) cli.ActionFunc {
	return func(c *cli.Context) error {
		e, err := openPkgEnv(c, true)
		if err != nil {
			return err
		}
		defer e.close()
		argv, err := e.m.Argv(op, c.Args().Slice(), pkgmgr.ArgvOptions{Yes: c.Bool("yes")})
		if err != nil {
			return usagef("%s: %v", op, err)
		}
		d, _ := e.readDBs()
		res, err := e.runPM(argv, what)
		if res != nil && res.Err() == nil && op != pkgmgr.OpUpdate && op != pkgmgr.OpRaw {
			e.writeSnapshot(d)
		}
		return err
	}
}
