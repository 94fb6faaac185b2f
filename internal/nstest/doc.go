// Package nstest is the test bed for everything that mounts: it builds the
// suite's binaries once, runs shell scripts that call them as root inside a
// private mount namespace (exec.Cmd with Unshareflags CLONE_NEWNS; the test
// process itself never unshares), and checks after each test that no loop
// device backed by the test's files and no mount under its directory is
// left on the host.
//
// It is for tests only.
package nstest
