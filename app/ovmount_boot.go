package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/internal/cli"
)

// bootFlag is ovmount's mode for init systems (packaging/: the systemd
// unit, the sysvinit script, OpenWrt's init script).
var bootFlag = &cli.BoolFlag{
	Name:  "boot",
	Usage: "for init scripts: when the config names no card, say so and exit 0; wait up to 30 s for the image to appear (a card or USB stick still being detected and mounted)",
}

// bootWait is how long ovmount --boot waits for the image file (a
// variable for the package's own tests).
var bootWait = 30 * time.Second

// bootPoll is how often it looks.
const bootPoll = 200 * time.Millisecond

// bootCheck is the --boot part of ovmount: skip is true when there is
// nothing to mount (no config, or no SD_ROOTFS in it); otherwise it
// returns once the image exists, or with an error naming it after
// bootWait. Everything else (trust, UUID, the file system) is ovmount's
// usual checking.
func bootCheck(c *cli.Context) (skip bool, err error) {
	path := config.Resolve(c.String("config"))
	cfg, err := config.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(c.App.Writer, "ovmount: no %s: no card configured, nothing to mount\n", path)
		return true, nil
	}
	if err != nil {
		return false, err
	}
	img, _ := cfg.Get(config.KeyImage)
	if img = strings.TrimSpace(img); img == "" {
		fmt.Fprintf(c.App.Writer, "ovmount: %s names no card (%s is not set): nothing to mount\n", path, config.KeyImage)
		return true, nil
	}
	deadline := time.Now().Add(bootWait)
	said := false
	for {
		_, err := os.Stat(img)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return false, nil // there (or another problem, which ovmount reports)
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("%s (%s in %s) did not appear within %v: is the card inserted and the file system holding the image mounted?", img, config.KeyImage, path, bootWait)
		}
		if !said {
			fmt.Fprintf(c.App.Writer, "ovmount: waiting up to %v for %s\n", bootWait, img)
			said = true
		}
		time.Sleep(bootPoll)
	}
}
