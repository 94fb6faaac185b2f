// Package faults holds the fault-injection points the end-to-end tests
// use to check that every step of ovmount and of a transaction can be
// interrupted safely. They exist only in builds with the
// ovpkg_testhooks tag (what `make test` builds); in the product they are
// no-ops and the binary carries none of their names.
//
// With the tag, two environment variables drive them:
//
//	OVPKG_TEST_CRASH_AT=<step>  the process SIGKILLs itself at that step
//	OVPKG_TEST_FAIL_AT=<step>[,<step>...]   those steps fail with EIO
//
//	OVPKG_TEST_<NAME>=<value>   a test-only setting (faults.Setting)
//
// The steps are named where they are called (txn's crash points list the
// transaction's).
package faults
