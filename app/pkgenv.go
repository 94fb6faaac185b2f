package app

import (
	"context"
	"github.com/ovpkg/ovpkg/internal/units"
	"io"
	"strings"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/internal/progress"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/pkgflow"
	"github.com/ovpkg/ovpkg/pkgmgr"
)

// Flags of the package verbs.
var (
	pmFlag = &cli.StringFlag{
		Name:  "pm",
		Usage: "package manager to drive: " + strings.Join(pkgmgr.Names(), ", ") + " (default: the one the root has)",
	}
	yesFlag = &cli.BoolFlag{
		Name:    "yes",
		Aliases: []string{"y"},
		Usage:   "do not ask for confirmation (needed when there is no terminal to ask on)",
	}
)

// pkgFlags are the flags every package verb takes.
func pkgFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{configFlag, rootFlag, pmFlag}, extra...)
}

// flowOptions turns a package verb's command line into pkgflow.Options.
// Human messages and the progress bar go to stderr; the package
// manager's own output to stdout and stderr, below the bar.
func flowOptions(c *cli.Context) pkgflow.Options {
	p := progress.New(c.App.ErrWriter, "ovpkg: ")
	return pkgflow.Options{
		Mount:        mountset.Options{ConfigPath: c.String("config"), Root: c.String("root")},
		PM:           c.String("pm"),
		Yes:          c.Bool("yes"),
		Force:        c.Bool("force"),
		NoSpaceCheck: skipSpaceCheck(c), // test builds only
		Progress:     p,
		Stdout:       p.Wrap(c.App.Writer),
		Stderr:       p,
	}
}

// openPkgEnv opens the package environment read-only (list, files,
// status): the package manager and the current mount record, if any.
// Human messages go to out.
func openPkgEnv(c *cli.Context, out io.Writer) (*pkgflow.Env, error) {
	opt := flowOptions(c)
	opt.Progress = progress.NewPlain(out, "ovpkg: ")
	return pkgflow.Open(opt, false)
}

// checkArgs refuses arguments that would be read as options.
func checkArgs(verb string, args []string) error {
	for _, a := range args {
		if a == "" || strings.HasPrefix(a, "-") {
			return usagef("%s: %q is not a package name or file", verb, a)
		}
	}
	return nil
}

// change runs a package verb through pkgflow and prints its result.
func change(c *cli.Context, op pkgmgr.Op, args []string) error {
	opt := flowOptions(c)
	defer opt.Progress.Close()
	res, err := pkgflow.Change(context.Background(), opt, op, args)
	reportRSS(c.App.ErrWriter)
	if err != nil {
		return err
	}
	printServices(opt.Progress, res)
	say := func(format string, a ...any) { opt.Progress.Say(format, a...) }
	if res.Nothing {
		switch op {
		case pkgmgr.OpUpgrade:
			say("nothing to upgrade")
		default:
			say("nothing to %s: %s", op, strings.Join(args, ", "))
		}
		return nil
	}
	var names []string
	if res.Plan != nil {
		for _, p := range res.Plan.Install {
			names = append(names, p.Name+" "+p.Version)
		}
	}
	switch op {
	case pkgmgr.OpInstall, pkgmgr.OpUpgrade:
		verb := "installed"
		if op == pkgmgr.OpUpgrade {
			verb = "upgraded"
		}
		say("%s on the card: %s%s", verb, strings.Join(names, ", "), sizeNote(res))
		if res.Plan != nil && len(res.Plan.Remove) > 0 {
			say("removed: %s", strings.Join(planNames(res.Plan.Remove), ", "))
		}
	default:
		if res.Plan != nil {
			say("removed from the card: %s", strings.Join(planNames(res.Plan.Remove), ", "))
		}
	}
	if res.Freed > 0 {
		say("deleted the %s of archives this command downloaded (KEEP_ARCHIVES=yes keeps them)", units.Bytes(res.Freed))
	}
	if len(res.Holders) > 0 {
		var s []string
		for _, x := range res.Holders {
			s = append(s, x.String())
		}
		say("these processes now hold the card (stop them before eject): %s", strings.Join(s, "; "))
	}
	return nil
}

// sizeNote is the summary's size: the change in installed size the
// package manager states (an upgrade's can be zero or negative: the new
// versions against the old), and what the transaction's layer holds on
// the card (an upgraded base package is there whole, the old version
// stays in the base). Nothing when neither is known.
func sizeNote(res *pkgflow.Result) string {
	var s []string
	if res.Plan != nil {
		switch n := res.Plan.InstallSize; {
		case n > 0:
			s = append(s, "+"+units.Bytes(n)+" installed size")
		case n < 0:
			s = append(s, "-"+units.Bytes(-n)+" installed size")
		}
	}
	if res.CardBytes >= 0 {
		s = append(s, units.Bytes(res.CardBytes)+" on the card")
	}
	if len(s) == 0 {
		return ""
	}
	return " (" + strings.Join(s, ", ") + ")"
}

func planNames(ps []pkgmgr.Package) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name)
	}
	return s
}

// printServices says which service actions the policy-rc.d held back,
// in the words that fit the verb: an install's services were not
// started; a removed package's service was not stopped by its scripts.
func printServices(p *progress.Printer, res *pkgflow.Result) {
	if res.PolicyNote != "" {
		p.Say("%s", res.PolicyNote)
	}
	var start, stop []string
	for _, s := range res.NotStarted {
		name, action, _ := strings.Cut(s, " ")
		switch action {
		case "stop", "force-stop":
			stop = append(stop, name)
		default:
			start = append(start, s)
		}
	}
	switch res.Op {
	case pkgmgr.OpRemove, pkgmgr.OpPurge:
		if len(stop) > 0 || len(start) > 0 {
			p.Say("services of the removed packages were left alone (ovpkg keeps package scripts from touching services): %s; if one still runs it holds the card and blocks eject: stop it (its init script may be gone with the package: kill the process)",
				strings.Join(append(stop, start...), ", "))
		}
	default:
		if len(start) > 0 {
			p.Say("services not started (so they do not hold the card): %s; start with %s (a running service must be stopped before eject)",
				strings.Join(start, ", "), serviceCmds(start, "start"))
		}
		if len(stop) > 0 {
			p.Say("services not stopped by the package scripts: %s; the old version may still run: restart with %s (or stop it before eject)",
				strings.Join(stop, ", "), serviceCmds(stop, "restart"))
		}
	}
}

// serviceCmds is "`service a ACTION`, `service b ACTION`" for the
// services named first in each entry ("tor start" or "tor").
func serviceCmds(entries []string, action string) string {
	var cmds []string
	for _, e := range entries {
		name, _, _ := strings.Cut(e, " ")
		cmds = append(cmds, "`service "+name+" "+action+"`")
	}
	return strings.Join(cmds, ", ")
}

// reportRSS is set by builds with the ovpkg_testhooks tag (benchmarks).
var reportRSS = func(io.Writer) {}

// pass runs op through the package manager with the safety net but no
// plan or transaction (update, configure, pm).
func passThrough(op pkgmgr.Op, what string) cli.ActionFunc {
	return func(c *cli.Context) error {
		opt := flowOptions(c)
		defer opt.Progress.Close()
		res, err := pkgflow.Pass(context.Background(), opt, op, c.Args().Slice(), what)
		if res != nil {
			printServices(opt.Progress, res)
		}
		return err
	}
}
