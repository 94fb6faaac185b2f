package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func installCommand() *cli.Command {
	return &cli.Command{
		Name:      "install",
		Usage:     "install packages (names or ./file.deb) onto the card",
		UsageText: "ovpkg install [--yes] [--pm apt|opkg] PKG|./FILE.deb...",
		Description: `Mounts the card if it is not (as ovmount does), then runs the package manager through the
live overlays: every file it writes, its database and /etc changes included, lands on the card
and shows in place at once. Before anything is written it works out what the install brings
in (apt-get -s), downloads the archives (onto the card), lists every path they hold
(dpkg-deb -c) and refuses paths outside the overlaid directories, so the base root is never
written; and it checks the card has room for the installed size. The package manager runs in
its own PID namespace that dies with ovpkg; Ctrl-C or SIGTERM stops it and ovpkg says what
state the database is in and what to run next. Maintainer scripts are kept from starting
services (a temporary policy-rc.d), and ovpkg names the ones it held back.

Exit status: 0 installed, 1 failure (unknown package, corrupt file, no space, interrupted...), 2 usage.`,
		Flags:  pkgFlags(yesFlag, noSpaceCheckFlag),
		Action: installAction,
	}
}

func installAction(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) == 0 {
		return usagef("install: name at least one package or package file")
	}
	return plannedChange(c, pkgmgr.OpInstall, args)
}

// plannedChange is install and upgrade: lock and mount, plan (closure,
// sizes), check the card's free space, fetch and list the archives, refuse
// paths outside the overlays, run the package manager, then tidy up and
// report. Everything before the package manager runs changes nothing (a
// card this command mounted is ejected again on failure).
func plannedChange(c *cli.Context, op pkgmgr.Op, args []string) (retErr error) {
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			return usagef("%s: %q: options go before the package names", op, a)
		}
	}
	args, err := resolveArgs(args)
	if err != nil {
		return err
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
	argv, err := e.m.Argv(op, args, pkgmgr.ArgvOptions{Yes: c.Bool("yes")})
	if err != nil {
		return usagef("%s: %v", op, err)
	}
	ctx := context.Background()
	planFn := e.m.PlanInstall
	if op == pkgmgr.OpUpgrade {
		planFn = e.m.PlanUpgrade
	}
	// Sizes and the dependency closure first (nothing written yet).
	plan, err := planFn(ctx, args, false)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	statusSize := int64(0)
	if fi, err := os.Stat(filepath.Join(e.root, e.m.StatusPath())); err == nil {
		statusSize = fi.Size()
	}
	if !c.Bool("no-space-check") {
		if err := pkgmgr.CheckSpace(e.rec.CardMount, plan, statusSize); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if len(plan.Install) == 0 {
		if op == pkgmgr.OpUpgrade {
			e.say("nothing to upgrade")
		} else {
			e.say("nothing to install: %s already installed", strings.Join(args, ", "))
		}
		return nil
	}
	// Fetch archives (onto the card) and read every path they hold,
	// unless every package is a local file already read.
	for _, p := range plan.Install {
		if _, known := plan.Paths[p.Key()]; !known {
			plan, err = planFn(ctx, args, true)
			if err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			break
		}
	}
	cleanup := func() {
		for _, f := range plan.Fetched {
			os.Remove(f)
		}
	}
	if err := pkgmgr.CheckPaths(e.root, e.rec.Dirs, plan); err != nil {
		cleanup()
		return fmt.Errorf("%s: %w", op, err)
	}
	d, err := e.readDBs()
	if err != nil {
		cleanup()
		return err
	}
	changed = true
	what := "installing " + strings.Join(args, " ")
	if op == pkgmgr.OpUpgrade {
		what = "upgrading " + strings.Join(append([]string{}, args...), " ")
	}
	res, err := e.change(string(op), args, argv, strings.TrimSpace(what))
	cleanup()
	if res != nil && res.Err() == nil {
		e.writeSnapshot(d)
	}
	if err != nil {
		return err
	}
	var names []string
	for _, p := range plan.Install {
		names = append(names, p.Name+" "+p.Version)
	}
	verb := "installed"
	if op == pkgmgr.OpUpgrade {
		verb = "upgraded"
	}
	e.say("%s on the card: %s (%s)", verb, strings.Join(names, ", "), pkgmgr.HumanSize(plan.InstallSize))
	if h := e.holders(); len(h) > 0 {
		var s []string
		for _, x := range h {
			s = append(s, x.String())
		}
		e.say("these processes now hold the card (stop them before eject): %s", strings.Join(s, "; "))
	}
	return nil
}
