// Package faults holds the fault-injection points the end-to-end tests
// use to check that every step of ovmount and of a transaction can be
// interrupted safely:
//
//	OVPKG_TEST_CRASH_AT=<step>  the process SIGKILLs itself at that step
//	OVPKG_TEST_FAIL_AT=<step>   that step fails with EIO
//
// Both are read from the environment only, so the product behaves
// normally unless a test sets them. The steps are named where they are
// called (txn.CrashPoints lists the transaction's).
package faults

import (
	"os"
	"syscall"
)

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

// Fail returns EIO when $OVPKG_TEST_FAIL_AT names step.
func Fail(step string) error {
	if v := os.Getenv(FailEnv); v != "" && v == step {
		return syscall.EIO
	}
	return nil
}
