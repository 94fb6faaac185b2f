// Command ovpkg is the multi-call binary of the suite: started as
// mkoverlay, ovmount, uovmount or eject (a link or a copy under that
// name) it is that tool; started as ovpkg it takes the package verbs.
package main

import (
	"os"

	"github.com/ovpkg/ovpkg/app"
)

func main() { os.Exit(app.Main(os.Args)) }
