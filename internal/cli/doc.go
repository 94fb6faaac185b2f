// Package cli is the suite's command-line layer: apps, commands with
// subcommands, typed flags, GNU-style parsing (flags before, between and
// after arguments; `--` ends the flags), generated --help and man pages.
//
// Its names follow the subset of github.com/ovpkg/ovpkg/internal/cli the suite used
// (App, Command, Context, StringFlag, BoolFlag, Exit, ShowAppHelp...), so
// commands read the same. It replaces that library because urfave/cli
// renders help with text/template, whose reflection turns off the Go
// linker's dead-method elimination: about 2 MB of a 6 MB budget on
// mipsle (docs/dependencies.md has the measurement).
//
// It owns parsing and help text only; it does not decide exit codes or
// print errors (the app does, from *UsageError and ExitCoder).
package cli
