//go:build ovpkg_testhooks

package faults

import (
	"os"
	"strings"
	"syscall"
)

// Enabled reports whether this build carries the test hooks.
const Enabled = true

// CrashEnv and FailEnv name the environment variables.
const (
	CrashEnv = "OVPKG_TEST_CRASH_AT"
	FailEnv  = "OVPKG_TEST_FAIL_AT"
)

// Crash SIGKILLs the process when $OVPKG_TEST_CRASH_AT names step, after
// a sync so that what was written is on disk as after a real crash.
func Crash(step string) {
	if v := os.Getenv(CrashEnv); v != "" && v == step {
		syscall.Sync()
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

// Setting returns $OVPKG_TEST_<name>: test-only knobs (the layer limit
// of the layer benchmarks, the RSS report of the package benchmark).
func Setting(name string) string { return os.Getenv("OVPKG_TEST_" + name) }

// Fail returns EIO when $OVPKG_TEST_FAIL_AT names step (a comma-separated
// list may name several).
func Fail(step string) error {
	for _, v := range strings.Split(os.Getenv(FailEnv), ",") {
		if v != "" && v == step {
			return syscall.EIO
		}
	}
	return nil
}
