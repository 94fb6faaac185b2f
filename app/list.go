package app

import (
	"fmt"
	"github.com/ovpkg/ovpkg/internal/units"
	"text/tabwriter"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the packages on the card (with --all, the base's too)",
		UsageText: "ovpkg list [--all] [--json]",
		Description: `Compares the card's copy of the package database with the base root's own and prints each
package with its version, installed size and where it lives:
  card         installed by ovpkg, not in the base
  card-update  in the base at another version; the card's version is the one in use
  removed      in the base, removed through the overlay (whiteouts hide it)
  base-drift   the base changed this package after the card copied the database
  base         in the base, untouched (shown with --all)

Exit status: 0, 1 failure, 2 usage.`,
		Flags:  pkgFlags(jsonFlag, &cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "include the base's packages"}),
		Action: listAction,
	}
}

func listAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("list takes no arguments")
	}
	e, err := openPkgEnv(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	defer e.Close()
	if e.Rec == nil && !c.Bool("all") {
		return fmt.Errorf("no card is mounted (run ovmount, or use --all to list the base)")
	}
	d, err := e.ReadDBs()
	if err != nil {
		return err
	}
	entries := pkgmgr.Classify(d.Merged, d.Base, d.CardHasCopy, d.Snapshot)
	var shown []pkgmgr.Entry
	for _, x := range entries {
		if x.Where != pkgmgr.InBase || c.Bool("all") {
			shown = append(shown, x)
		}
	}
	if c.Bool("json") {
		if shown == nil {
			shown = []pkgmgr.Entry{}
		}
		return printJSON(c.App.Writer, shown)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tVERSION\tSIZE\tWHERE\tBASE VERSION")
	for _, x := range shown {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.Key(), x.Version, units.Bytes(x.InstalledSize), x.Where, x.BaseVersion)
	}
	return tw.Flush()
}
