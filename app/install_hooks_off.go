//go:build !ovpkg_testhooks

package app

import "github.com/ovpkg/ovpkg/internal/cli"

// testInstallFlags are install's and upgrade's test-only flags: none in
// the product.
var testInstallFlags []cli.Flag

// skipSpaceCheck is never true in the product.
func skipSpaceCheck(*cli.Context) bool { return false }
