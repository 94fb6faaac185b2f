// Command mkoverlay is the mkoverlay tool alone; the same code answers as mkoverlay when the
// multi-call ovpkg binary is started under that name.
package main

import (
	"os"

	"github.com/ovpkg/ovpkg/app"
)

func main() { os.Exit(app.Tool("mkoverlay", os.Args)) }
