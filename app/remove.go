package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func removeCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove packages that live on the card",
		UsageText: "ovpkg remove [--yes] [--purge] [--force] PKG...",
		Description: `Removes packages installed on the card. A package that is part of the base root (in the
base's own package database) is refused: removing it through the overlay would leave
whiteouts on the card that hide the base's files. --force removes it anyway. Packages the
package manager would remove as dependants are checked the same way.

Exit status: 0 removed, 1 failure or refused, 2 usage.`,
		Flags: pkgFlags(yesFlag,
			&cli.BoolFlag{Name: "purge", Usage: "remove configuration files too"},
			&cli.BoolFlag{Name: "force", Usage: "remove packages of the base root too (leaves whiteouts on the card)"}),
		Action: removeAction,
	}
}

func removeAction(c *cli.Context) (retErr error) {
	args := c.Args().Slice()
	if len(args) == 0 {
		return usagef("remove: name at least one package")
	}
	op := pkgmgr.OpRemove
	if c.Bool("purge") {
		op = pkgmgr.OpPurge
	}
	e, err := openPkgEnv(c, true)
	if err != nil {
		return err
	}
	defer e.close()
	changed := false
	defer func() {
		if retErr != nil && !changed {
			e.undoMount()
			retErr = fmt.Errorf("%w; nothing was changed", retErr)
		}
	}()
	if _, err := e.m.Argv(op, args, pkgmgr.ArgvOptions{}); err != nil {
		return usagef("remove: %v", err)
	}
	plan, err := e.m.PlanRemove(context.Background(), args)
	if err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	var set []string
	for _, p := range plan.Remove {
		set = append(set, p.Key())
	}
	if len(set) > len(args) && !c.Bool("yes") {
		return fmt.Errorf("remove: %s also removes the packages that depend on it: %s; run again with --yes to remove them all",
			strings.Join(args, ", "), strings.Join(set[len(args):], ", "))
	}
	argv, err := e.m.Argv(op, set, pkgmgr.ArgvOptions{Yes: c.Bool("yes")})
	if err != nil {
		return usagef("remove: %v", err)
	}
	d, err := e.readDBs()
	if err != nil {
		return err
	}
	if !c.Bool("force") {
		bix := pkgmgr.NewIndex(d.base)
		var inBase []string
		for _, p := range plan.Remove {
			b, ok := bix.Lookup(p.Key())
			if !ok {
				b, ok = bix.Lookup(p.Name)
			}
			if ok && b.Installed() {
				inBase = append(inBase, p.Name+" ("+b.Version+")")
			}
		}
		if len(inBase) > 0 {
			return fmt.Errorf("remove: refusing: %s part of the base root; removing through the overlay would leave whiteouts that hide the base's files (use --force to do it anyway)",
				strings.Join(inBase, ", ")+map[bool]string{true: " is", false: " are"}[len(inBase) == 1])
		}
	}
	changed = true
	res, err := e.change("remove", args, argv, "removing "+strings.Join(args, " "))
	if res != nil && res.Err() == nil {
		e.writeSnapshot(d)
	}
	if err != nil {
		return err
	}
	var names []string
	for _, p := range plan.Remove {
		names = append(names, p.Name)
	}
	e.say("removed from the card: %s", strings.Join(names, ", "))
	return nil
}
