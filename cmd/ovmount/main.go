// Command ovmount is the ovmount tool alone; the same code answers as ovmount when the
// multi-call ovpkg binary is started under that name.
package main

import (
	"os"

	"github.com/ovpkg/ovpkg/app"
)

func main() { os.Exit(app.Tool("ovmount", os.Args)) }
