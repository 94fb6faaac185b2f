package app

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ovpkg/ovpkg/internal/cli"
)

func filesCommand() *cli.Command {
	return &cli.Command{
		Name:      "files",
		Usage:     "list the files a package installed, and whether each is on the card",
		UsageText: "ovpkg files [--json] PKG",
		Flags:     pkgFlags(jsonFlag),
		Action:    filesAction,
	}
}

type fileEntry struct {
	Path   string `json:"path"`
	OnCard bool   `json:"on_card"`
}

func filesAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("files: name one package")
	}
	e, err := openPkgEnv(c, false)
	if err != nil {
		return err
	}
	defer e.close()
	paths, err := e.m.Files(c.Args().First())
	if err != nil {
		return err
	}
	out := make([]fileEntry, 0, len(paths))
	for _, p := range paths {
		out = append(out, fileEntry{Path: p, OnCard: e.onCard(p)})
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, out)
	}
	for _, f := range out {
		where := "base"
		if f.OnCard {
			where = "card"
		}
		fmt.Fprintf(c.App.Writer, "%s\t%s\n", where, f.Path)
	}
	return nil
}

// onCard says whether path (absolute, as the system sees it) exists in
// one of the card's layers.
func (e *pkgEnv) onCard(path string) bool {
	if e.rec == nil {
		return false
	}
	full := filepath.Join(e.root, path)
	for _, o := range e.rec.Overlays {
		rel, err := filepath.Rel(o.Target, full)
		if err != nil || rel == ".." || len(rel) > 2 && rel[:3] == "../" {
			continue
		}
		for _, l := range append([]string{o.Upper}, o.Lowers[:len(o.Lowers)-1]...) {
			if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
				return true
			}
		}
	}
	return false
}
