package app

import (
	"fmt"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgflow"
)

func filesCommand() *cli.Command {
	return &cli.Command{
		Name:      "files",
		Usage:     "list the files a package installed, and whether each is on the card",
		UsageText: "ovpkg files [--json] PKG",
		Description: `Lists the paths the package database records for PKG, each with where it lives:
  card     a file (or link) in one of the card's layers, or a directory the base does not have
  base     the base root's (directories such as /usr that the card merely fills in are base)
  missing  recorded, but not on the system

Exit status: 0, 1 failure (not installed...), 2 usage.`,
		Flags:  pkgFlags(jsonFlag),
		Action: filesAction,
	}
}

type fileEntry struct {
	Path   string `json:"path"`
	Where  string `json:"where"`
	OnCard bool   `json:"on_card"`
}

func filesAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("files: name one package")
	}
	e, err := openPkgEnv(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	defer e.Close()
	paths, err := e.M.Files(c.Args().First())
	if err != nil {
		return err
	}
	where, err := e.Where(paths)
	if err != nil {
		return err
	}
	out := make([]fileEntry, 0, len(paths))
	for i, p := range paths {
		out = append(out, fileEntry{Path: p, Where: where[i], OnCard: where[i] == pkgflow.WhereCard})
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, out)
	}
	for _, f := range out {
		fmt.Fprintf(c.App.Writer, "%s\t%s\n", f.Where, f.Path)
	}
	return nil
}
