// Package app is the command-line face of the suite: one internal/cli
// application that answers to the name it was started under (mkoverlay,
// ovmount, uovmount, eject, ovpkg), one cli.Command per file.
//
// app owns flags, help text, exit codes, --json output and the one-line
// error messages. It owns no mechanism: every action parses its arguments
// and calls image, mountset, pkgmgr and the other packages, which return
// errors that keep their cause (errors.Is works on them).
//
// Exit codes follow mount(8)/losetup(8)/apt conventions: 0 success,
// 1 the operation failed, 2 the command line was wrong.
package app
