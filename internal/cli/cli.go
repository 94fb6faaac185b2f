package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ActionFunc runs a command.
type ActionFunc func(*Context) error

// BeforeFunc runs before a command's action (and before its subcommands).
type BeforeFunc func(*Context) error

// OnUsageErrorFunc turns a command-line error into the error Run returns.
type OnUsageErrorFunc func(c *Context, err error, isSubcommand bool) error

// App is a program: either one command (Action and Flags) or a set of
// Commands, optionally with an Action for a first argument that names
// none.
type App struct {
	Name        string
	Usage       string
	UsageText   string
	ArgsUsage   string
	Description string
	Version     string
	Commands    []*Command
	Flags       []Flag
	Action      ActionFunc
	Before      BeforeFunc
	// Writer receives help and version output, ErrWriter nothing from
	// this package (the app prints its own errors there).
	Writer    io.Writer
	ErrWriter io.Writer
	// ExitErrHandler, when set, sees every error an action returns.
	ExitErrHandler func(*Context, error)
	// OnUsageError, when set, replaces the *UsageError of a bad command
	// line (commands may set their own).
	OnUsageError OnUsageErrorFunc
}

// Command is one verb, possibly with Subcommands of its own.
type Command struct {
	Name         string
	Aliases      []string
	Usage        string
	UsageText    string
	ArgsUsage    string
	Description  string
	Flags        []Flag
	Action       ActionFunc
	Before       BeforeFunc
	Subcommands  []*Command
	Hidden       bool
	OnUsageError OnUsageErrorFunc
	// SkipFlagParsing passes every argument to the action as it is
	// ("--" and words that look like flags included).
	SkipFlagParsing bool
}

// Names returns the command's name and aliases.
func (c *Command) Names() []string { return append([]string{c.Name}, c.Aliases...) }

// HasName reports whether name is the command's name or an alias.
func (c *Command) HasName(name string) bool {
	for _, n := range c.Names() {
		if n == name {
			return true
		}
	}
	return false
}

// UsageError is a wrong command line: an unknown flag, a missing or bad
// flag value, a missing required flag.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usageErr(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// ExitCoder is an error that carries the process exit status.
type ExitCoder interface {
	error
	ExitCode() int
}

type exitError struct {
	msg  string
	code int
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) ExitCode() int { return e.code }

// Exit returns an error that makes the program exit with code, printing
// msg (nothing when empty).
func Exit(msg string, code int) ExitCoder { return &exitError{msg: msg, code: code} }

// Run parses arguments (arguments[0] is the program name, ignored: the
// App's Name is used) and runs the command they name.
func (a *App) Run(arguments []string) error {
	if a.Writer == nil {
		a.Writer = os.Stdout
	}
	if a.ErrWriter == nil {
		a.ErrWriter = os.Stderr
	}
	root := &Command{
		Name:        a.Name,
		Usage:       a.Usage,
		UsageText:   a.UsageText,
		ArgsUsage:   a.ArgsUsage,
		Description: a.Description,
		Flags:       a.Flags,
		Action:      a.Action,
		Before:      a.Before,
		Subcommands: a.Commands,
	}
	var rest []string
	if len(arguments) > 1 {
		rest = arguments[1:]
	}
	err := a.run(nil, root, rest)
	if err != nil && a.ExitErrHandler != nil {
		a.ExitErrHandler(nil, err)
	}
	return err
}

func (a *App) run(parent *Context, cmd *Command, args []string) error {
	c := &Context{App: a, Command: cmd, parent: parent, flags: cmd.Flags}
	isRoot := parent == nil
	// A command with subcommands stops at its first argument, which names
	// the subcommand; any other takes flags anywhere.
	interleave := len(cmd.Subcommands) == 0
	var p *parsed
	var err error
	if cmd.SkipFlagParsing {
		p = &parsed{args: append([]string{}, args...)}
	} else {
		p, err = parse(cmd.Flags, args, interleave, isRoot && a.Version != "")
		if err == nil {
			err = p.checkRequired(cmd.Flags)
		}
	}
	c.vals, c.set, c.args = p.vals, p.set, p.args
	if err != nil {
		switch {
		case cmd.OnUsageError != nil:
			return cmd.OnUsageError(c, err, !isRoot)
		case a.OnUsageError != nil:
			return a.OnUsageError(c, err, !isRoot)
		}
		return err
	}
	if p.help {
		return showHelp(c)
	}
	if p.version {
		fmt.Fprintf(a.Writer, "%s version %s\n", a.Name, a.Version)
		return nil
	}
	if cmd.Before != nil {
		if err := cmd.Before(c); err != nil {
			return err
		}
	}
	if len(cmd.Subcommands) > 0 && len(c.args) > 0 {
		if sub := findCommand(cmd.Subcommands, c.args[0]); sub != nil {
			return a.run(c, sub, c.args[1:])
		}
	}
	if cmd.Action == nil {
		if len(cmd.Subcommands) > 0 && len(c.args) > 0 {
			return a.usageError(c, cmd, usageErr("unknown command %q", c.args[0]), !isRoot)
		}
		return showHelp(c)
	}
	return cmd.Action(c)
}

func (a *App) usageError(c *Context, cmd *Command, err error, sub bool) error {
	switch {
	case cmd.OnUsageError != nil:
		return cmd.OnUsageError(c, err, sub)
	case a.OnUsageError != nil:
		return a.OnUsageError(c, err, sub)
	}
	return err
}

func findCommand(cmds []*Command, name string) *Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// Context is one command's parsed command line, linked to its parent's.
type Context struct {
	App     *App
	Command *Command
	parent  *Context
	flags   []Flag
	vals    map[string]any
	set     map[string]bool
	args    []string
}

// Args are a command's arguments (what is not a flag).
type Args []string

// Get returns the n-th argument, or "" past the end.
func (a Args) Get(n int) string {
	if n >= 0 && n < len(a) {
		return a[n]
	}
	return ""
}

// First returns the first argument, or "".
func (a Args) First() string { return a.Get(0) }

// Tail returns every argument but the first.
func (a Args) Tail() []string {
	if len(a) < 2 {
		return []string{}
	}
	return append([]string{}, a[1:]...)
}

// Len is the number of arguments.
func (a Args) Len() int { return len(a) }

// Present reports whether there is any argument.
func (a Args) Present() bool { return len(a) > 0 }

// Slice returns a copy of the arguments.
func (a Args) Slice() []string { return append([]string{}, a...) }

// Args returns the command's arguments.
func (c *Context) Args() Args { return Args(c.args) }

// NArg is the number of arguments.
func (c *Context) NArg() int { return len(c.args) }

// Parent is the enclosing command's context (nil at the top).
func (c *Context) Parent() *Context { return c.parent }

// lookup finds the value of the flag called name in this command or the
// nearest enclosing one that defines it.
func (c *Context) lookup(name string) (any, bool, bool) {
	for x := c; x != nil; x = x.parent {
		for _, f := range x.flags {
			for _, n := range f.Names() {
				if n == name {
					return x.vals[f.Names()[0]], x.set[f.Names()[0]], true
				}
			}
		}
	}
	return nil, false, false
}

// Value returns the flag's value (nil for an unknown flag).
func (c *Context) Value(name string) any {
	v, _, _ := c.lookup(name)
	return v
}

// IsSet reports whether the flag was given on the command line or
// through one of its environment variables.
func (c *Context) IsSet(name string) bool {
	_, set, _ := c.lookup(name)
	return set
}

// String returns a string flag's value.
func (c *Context) String(name string) string { s, _ := c.Value(name).(string); return s }

// Bool returns a bool flag's value.
func (c *Context) Bool(name string) bool { b, _ := c.Value(name).(bool); return b }

// Int returns an int flag's value.
func (c *Context) Int(name string) int { n, _ := c.Value(name).(int); return n }

// Int64 returns an int64 flag's value.
func (c *Context) Int64(name string) int64 { n, _ := c.Value(name).(int64); return n }

// Uint returns a uint flag's value.
func (c *Context) Uint(name string) uint { n, _ := c.Value(name).(uint); return n }

// StringSlice returns a repeatable string flag's values.
func (c *Context) StringSlice(name string) []string {
	s, _ := c.Value(name).([]string)
	return append([]string{}, s...)
}

// ShowAppHelp prints the help of the whole app.
func ShowAppHelp(c *Context) error {
	for c.parent != nil {
		c = c.parent
	}
	return showHelp(c)
}

// ShowCommandHelp prints the help of the command c runs, or of its
// subcommand name when name is not empty.
func ShowCommandHelp(c *Context, name string) error {
	if name == "" {
		return showHelp(c)
	}
	sub := findCommand(c.Command.Subcommands, name)
	if sub == nil {
		return usageErr("no help topic for %q", name)
	}
	return showHelp(&Context{App: c.App, Command: sub, parent: c, flags: sub.Flags})
}

// ShowSubcommandHelp prints the help of the command c runs, listing its
// subcommands.
func ShowSubcommandHelp(c *Context) error { return showHelp(c) }

var errNoWriter = errors.New("cli: no writer")

func showHelp(c *Context) error {
	if c.App == nil || c.App.Writer == nil {
		return errNoWriter
	}
	_, err := io.WriteString(c.App.Writer, helpText(c))
	return err
}
