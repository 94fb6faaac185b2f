package cli

import (
	"fmt"
	"strings"
	"time"
)

// fullName is the command's name as typed: "ovpkg subhost start".
func (c *Context) fullName() string {
	var parts []string
	for x := c; x != nil; x = x.parent {
		parts = append([]string{x.Command.Name}, parts...)
	}
	return strings.Join(parts, " ")
}

// placeholder splits a usage text into the name of the flag's value (a
// `word` in backquotes, else "value") and the text without the quotes.
func placeholder(usage string) (name, text string) {
	i := strings.IndexByte(usage, '`')
	if i >= 0 {
		if j := strings.IndexByte(usage[i+1:], '`'); j >= 0 {
			name = usage[i+1 : i+1+j]
			return name, usage[:i] + name + usage[i+1+j+1:]
		}
	}
	return "value", usage
}

// flagSpec is the left column of a flag's help line: "--root DIR, -r DIR".
func flagSpec(f Flag) (spec, usage string) {
	ph, usage := placeholder(f.GetUsage())
	var parts []string
	for _, n := range f.Names() {
		s := dashes(n)
		if f.TakesValue() {
			s += " " + ph
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", "), usage
}

// defaultText is " (default: X)" for a flag whose default is worth
// showing, plus the environment variables it reads.
func defaultText(f Flag) string {
	var s string
	switch v := f.defaultValue().(type) {
	case string:
		if v != "" {
			s = fmt.Sprintf(" (default: %q)", v)
		}
	case bool:
		if v {
			s = " (default: true)"
		}
	case int:
		if v != 0 {
			s = fmt.Sprintf(" (default: %d)", v)
		}
	case int64:
		if v != 0 {
			s = fmt.Sprintf(" (default: %d)", v)
		}
	case uint:
		if v != 0 {
			s = fmt.Sprintf(" (default: %d)", v)
		}
	case time.Duration:
		if v != 0 {
			s = fmt.Sprintf(" (default: %s)", v)
		}
	case []string:
		if len(v) > 0 {
			s = fmt.Sprintf(" (default: %s)", strings.Join(v, ", "))
		}
	}
	if env := f.common().envVars; len(env) > 0 {
		s += " [$" + strings.Join(env, ", $") + "]"
	}
	return s
}

// usageLine is the USAGE section's text.
func usageLine(c *Context) string {
	cmd := c.Command
	if cmd.UsageText != "" {
		return cmd.UsageText
	}
	s := c.fullName()
	if len(cmd.Flags) > 0 {
		s += " [options]"
	}
	if len(cmd.Subcommands) > 0 {
		s += " command [command options]"
	}
	if cmd.ArgsUsage != "" {
		s += " " + cmd.ArgsUsage
	}
	return s
}

func indent(s, pad string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

// table lays out two columns.
func table(b *strings.Builder, rows [][2]string) {
	w := 0
	for _, r := range rows {
		if len(r[0]) > w {
			w = len(r[0])
		}
	}
	for _, r := range rows {
		fmt.Fprintf(b, "   %-*s  %s\n", w, r[0], r[1])
	}
}

func visibleCommands(cmds []*Command) []*Command {
	var out []*Command
	for _, c := range cmds {
		if !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

func visibleFlags(flags []Flag) []Flag {
	var out []Flag
	for _, f := range flags {
		if f.IsVisible() {
			out = append(out, f)
		}
	}
	return out
}

// helpText renders a command's --help.
func helpText(c *Context) string {
	cmd := c.Command
	var b strings.Builder
	b.WriteString("NAME:\n   " + c.fullName())
	if cmd.Usage != "" {
		b.WriteString(" - " + cmd.Usage)
	}
	b.WriteString("\n\nUSAGE:\n" + indent(usageLine(c), "   ") + "\n")
	if c.parent == nil && c.App.Version != "" {
		b.WriteString("\nVERSION:\n   " + c.App.Version + "\n")
	}
	if cmd.Description != "" {
		b.WriteString("\nDESCRIPTION:\n" + indent(cmd.Description, "   ") + "\n")
	}
	if subs := visibleCommands(cmd.Subcommands); len(subs) > 0 {
		b.WriteString("\nCOMMANDS:\n")
		var rows [][2]string
		for _, s := range subs {
			rows = append(rows, [2]string{strings.Join(s.Names(), ", "), s.Usage})
		}
		table(&b, rows)
	}
	b.WriteString("\nOPTIONS:\n")
	var rows [][2]string
	for _, f := range visibleFlags(cmd.Flags) {
		spec, usage := flagSpec(f)
		rows = append(rows, [2]string{spec, usage + defaultText(f)})
	}
	rows = append(rows, [2]string{"--help, -h", "show help"})
	if c.parent == nil && c.App.Version != "" {
		rows = append(rows, [2]string{"--version, -v", "print the version"})
	}
	table(&b, rows)
	return b.String()
}
