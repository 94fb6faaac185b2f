package cli

import (
	"strings"
)

// roff escapes text for a man page: backslashes, hyphens, and a dot or
// quote at the start of a line.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// ToMan renders the app as a section-8 man page (for `make man`; the
// product binary never calls it, so the linker leaves it out).
func (a *App) ToMan() (string, error) {
	root := &Command{
		Name: a.Name, Usage: a.Usage, UsageText: a.UsageText, ArgsUsage: a.ArgsUsage,
		Description: a.Description, Flags: a.Flags, Subcommands: a.Commands,
	}
	c := &Context{App: a, Command: root, flags: root.Flags}
	var b strings.Builder
	b.WriteString(`.TH "` + strings.ToUpper(a.Name) + `" 8 "" "ovpkg ` + roff(a.Version) + `" "System Administration"` + "\n")
	b.WriteString(".SH NAME\n" + roff(a.Name))
	if a.Usage != "" {
		b.WriteString(` \- ` + roff(a.Usage))
	}
	b.WriteString("\n.SH SYNOPSIS\n.nf\n" + roff(usageLine(c)) + "\n.fi\n")
	if a.Description != "" {
		b.WriteString(".SH DESCRIPTION\n" + manParagraphs(a.Description))
	}
	if fl := visibleFlags(a.Flags); len(fl) > 0 {
		b.WriteString(".SH OPTIONS\n")
		manFlags(&b, fl)
	}
	if subs := visibleCommands(a.Commands); len(subs) > 0 {
		b.WriteString(".SH COMMANDS\n")
		for _, s := range subs {
			manCommand(&b, c, s)
		}
	}
	return b.String(), nil
}

func manCommand(b *strings.Builder, parent *Context, cmd *Command) {
	c := &Context{App: parent.App, Command: cmd, parent: parent, flags: cmd.Flags}
	b.WriteString(`.SS "` + roff(c.fullName()) + `"` + "\n")
	if cmd.Usage != "" {
		b.WriteString(roff(cmd.Usage) + "\n")
	}
	b.WriteString(".PP\n.nf\n" + roff(usageLine(c)) + "\n.fi\n")
	if cmd.Description != "" {
		b.WriteString(".PP\n" + manParagraphs(cmd.Description))
	}
	if fl := visibleFlags(cmd.Flags); len(fl) > 0 {
		manFlags(b, fl)
	}
	for _, s := range visibleCommands(cmd.Subcommands) {
		manCommand(b, c, s)
	}
}

func manFlags(b *strings.Builder, flags []Flag) {
	for _, f := range flags {
		spec, usage := flagSpec(f)
		b.WriteString(".TP\n.B " + roff(spec) + "\n" + roff(usage+defaultText(f)) + "\n")
	}
}

// manParagraphs keeps the description's lines, a blank line starting a
// new paragraph.
func manParagraphs(s string) string {
	var b strings.Builder
	for _, para := range strings.Split(strings.TrimSpace(s), "\n\n") {
		b.WriteString(roff(strings.TrimSpace(para)) + "\n.PP\n")
	}
	return strings.TrimSuffix(b.String(), ".PP\n")
}
