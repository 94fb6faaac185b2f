package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ovpkg/ovpkg/initoverlay"
	"github.com/ovpkg/ovpkg/internal/cli"
	"github.com/ovpkg/ovpkg/subhost"
)

// Version is set at link time (-X github.com/ovpkg/ovpkg/app.Version=...).
var Version = "dev"

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// UsageError marks a wrong command line; it exits with ExitUsage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// InitOverlay is the name under which the binary is the boot-time init
// (init=/sbin/init-overlay): package initoverlay, outside the CLI.
const InitOverlay = "init-overlay"

// tools lists the names the multi-call binary answers to and the command
// each runs as a stand-alone program.
var tools = map[string]func() *cli.Command{
	"mkoverlay": mkoverlayCommand,
	"ovmount":   ovmountCommand,
	"uovmount":  uovmountCommand,
	"eject":     ejectCommand,
	// overlay-boot's names (issue 12).
	"overlay-boot": overlayBootCommand,
	"overlay-go":   overlayGoCommand,
	"overlay-stop": overlayStopCommand,
}

// Main runs the suite with args (args[0] chooses the tool) and returns the
// process exit code. Output goes to stdout/stderr.
func Main(args []string) int {
	return Run(args, os.Stdout, os.Stderr)
}

// Run is Main with injected output streams, for tests.
func Run(args []string, stdout, stderr io.Writer) int {
	name := "ovpkg"
	if len(args) > 0 {
		name = filepath.Base(args[0])
	}
	if name == subhost.InitArg0 {
		return subhost.InitMain() // a subhost's PID 1, started by its supervisor
	}
	if name == InitOverlay {
		// PID 1 at boot: no command line library, nothing else first.
		return initoverlay.Main(args, stdout, stderr)
	}
	a := newApp(name, stdout, stderr)
	err := a.Run(append([]string{a.Name}, args[1:]...))
	return report(a.Name, err, stderr)
}

// New returns the application for one tool name (mkoverlay, ovmount,
// uovmount, eject; anything else is ovpkg), e.g. for generating man pages.
func New(name string, stdout, stderr io.Writer) *cli.App { return newApp(name, stdout, stderr) }

// Names lists the tool names the binary answers to, ovpkg first.
func Names() []string {
	return []string{"ovpkg", "mkoverlay", "ovmount", "uovmount", "eject", "overlay-boot", "overlay-go", "overlay-stop"}
}

// Tool runs one tool by name regardless of args[0] (used by the per-tool
// mains in cmd/).
func Tool(name string, args []string) int {
	a := newApp(name, os.Stdout, os.Stderr)
	rest := []string{}
	if len(args) > 1 {
		rest = args[1:]
	}
	return report(a.Name, a.Run(append([]string{a.Name}, rest...)), os.Stderr)
}

func newApp(name string, stdout, stderr io.Writer) *cli.App {
	var a *cli.App
	if mk, ok := tools[name]; ok {
		c := mk()
		a = &cli.App{
			Name:        name,
			Usage:       c.Usage,
			UsageText:   c.UsageText,
			ArgsUsage:   c.ArgsUsage,
			Description: c.Description,
			Flags:       c.Flags,
			Action:      c.Action,
			Before:      c.Before,
		}
	} else {
		a = &cli.App{
			Name:     "ovpkg",
			Usage:    "install packages onto an overlay card image",
			Commands: ovpkgCommands(),
			// Reached only when the first argument is no command.
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return usagef("unknown command %q", c.Args().First())
				}
				return cli.ShowAppHelp(c)
			},
		}
	}
	a.Version = Version
	a.Writer = stdout
	a.ErrWriter = stderr
	a.ExitErrHandler = func(*cli.Context, error) {} // report() decides
	a.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return &UsageError{Msg: err.Error()}
	}
	return a
}

// report prints err as one line and maps it to an exit code.
func report(name string, err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var ue *UsageError
	var cue *cli.UsageError
	var ec cli.ExitCoder
	code := ExitFailure
	switch {
	case errors.As(err, &ue), errors.As(err, &cue):
		code = ExitUsage
	case errors.As(err, &ec):
		code = ec.ExitCode()
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	if msg != "" {
		fmt.Fprintf(stderr, "%s: %s\n", name, msg)
	}
	if code == ExitUsage {
		fmt.Fprintf(stderr, "Try '%s --help' for more information.\n", name)
	}
	return code
}

// ovpkgCommands is the ovpkg tool's command set: the package verbs plus
// the stand-alone tools under their own names.
func ovpkgCommands() []*cli.Command {
	cmds := []*cli.Command{
		mkoverlayCommand(),
		ovmountCommand(),
		uovmountCommand(),
		ejectCommand(),
	}
	cmds = append(cmds, packageCommands()...)
	cmds = append(cmds, txnCommands()...)
	cmds = append(cmds, subhostCommand(), tryCommand(), overlayBootCommand(), overlayGoCommand(), overlayStopCommand())
	cmds = append(cmds, bootCommands()...)
	for _, mk := range testCommands {
		cmds = append(cmds, mk())
	}
	return cmds
}

// testCommands are hidden verbs that only builds with the
// ovpkg_testhooks tag register (app/*_testhooks.go).
var testCommands []func() *cli.Command
