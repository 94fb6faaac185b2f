// Command mangen writes a section-8 man page for every tool name into the
// directory given as its argument (make man). It lives outside the product
// binary so that the man-page renderer is not linked into it.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ovpkg/ovpkg/app"
)

func main() {
	dir := "man"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
	for _, name := range app.Names() {
		a := app.New(name, io.Discard, io.Discard)
		page, err := a.ToMan()
		if err != nil {
			fmt.Fprintf(os.Stderr, "mangen: %s: %v\n", name, err)
			os.Exit(1)
		}
		// urfave/cli renders section 8 headers from the app; keep it a
		// system-administration page.
		path := filepath.Join(dir, name+".8")
		if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "mangen:", err)
			os.Exit(1)
		}
	}
}
