//go:build ovpkg_testhooks

package app

import "github.com/ovpkg/ovpkg/internal/cli"

// testInstallFlags: --no-space-check skips the free-space check, so that
// tests can fill the card and see ENOSPC (test builds only).
var testInstallFlags = []cli.Flag{&cli.BoolFlag{
	Name:   "no-space-check",
	Usage:  "skip the free-space check (tests inject ENOSPC with it)",
	Hidden: true,
}}

func skipSpaceCheck(c *cli.Context) bool { return c.Bool("no-space-check") }
