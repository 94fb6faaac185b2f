//go:build !ovpkg_testhooks

package faults

// Enabled reports whether this build carries the test hooks.
const Enabled = false

// Crash does nothing in the product.
func Crash(string) {}

// Fail never fails in the product.
func Fail(string) error { return nil }

// Setting is always empty in the product.
func Setting(string) string { return "" }
