package cli

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type got struct {
	args []string
	vals map[string]any
	cmd  string
}

func testApp(out *bytes.Buffer, g *got) *App {
	record := func(c *Context) error {
		g.cmd = c.fullName()
		g.args = c.Args().Slice()
		g.vals = map[string]any{
			"json": c.Bool("json"), "root": c.String("root"), "n": c.Int("n"),
			"size": c.Int64("size"), "wait": c.Duration("wait"), "share": c.StringSlice("share"),
			"yes": c.Bool("yes"), "quiet": c.Bool("quiet"), "config": c.String("config"),
		}
		return nil
	}
	common := []Flag{
		&BoolFlag{Name: "json"},
		&StringFlag{Name: "root", Value: "/", Usage: "the `DIR` to use"},
		&BoolFlag{Name: "yes", Aliases: []string{"y"}},
		&BoolFlag{Name: "quiet", Aliases: []string{"q"}},
		&IntFlag{Name: "n"},
		&Int64Flag{Name: "size"},
		&DurationFlag{Name: "wait", Value: time.Second},
		&StringSliceFlag{Name: "share"},
		&StringFlag{Name: "config", EnvVars: []string{"CLI_TEST_CONFIG"}},
	}
	return &App{
		Name: "tool", Version: "1.2", Writer: out, ErrWriter: out,
		Commands: []*Command{
			{Name: "files", Aliases: []string{"f"}, Flags: common, Action: record},
			{Name: "raw", SkipFlagParsing: true, Action: record},
			{Name: "need", Flags: []Flag{&StringFlag{Name: "to", Required: true}}, Action: record},
			{Name: "sub", Flags: []Flag{&BoolFlag{Name: "json"}}, Subcommands: []*Command{
				{Name: "start", Flags: []Flag{&StringFlag{Name: "root"}}, Action: record},
			}},
		},
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		argv []string
		args []string
		vals map[string]any
	}{
		// Flags after arguments, and between them.
		{[]string{"files", "cowsay", "--json"}, []string{"cowsay"}, map[string]any{"json": true}},
		{[]string{"files", "a", "--root", "/r", "b", "--root=/s"}, []string{"a", "b"}, map[string]any{"root": "/s"}},
		{[]string{"f", "-yq", "x"}, []string{"x"}, map[string]any{"yes": true, "quiet": true}},
		{[]string{"files", "--json=false", "-n", "0x10", "--size=-5"}, nil, map[string]any{"json": false, "n": 16, "size": int64(-5)}},
		{[]string{"files", "--", "--json", "-y"}, []string{"--json", "-y"}, map[string]any{"json": false, "yes": false}},
		{[]string{"files", "-", "--wait", "2m"}, []string{"-"}, map[string]any{"wait": 2 * time.Minute}},
		{[]string{"files", "--share", "a", "--share=b"}, nil, map[string]any{"share": []string{"a", "b"}}},
		{[]string{"files"}, nil, map[string]any{"root": "/", "wait": time.Second, "share": []string{}}},
		{[]string{"raw", "--", "-x", "--json"}, []string{"--", "-x", "--json"}, nil},
		{[]string{"sub", "--json", "start", "x", "--root", "/z"}, []string{"x"}, map[string]any{"json": true, "root": "/z"}},
	}
	for _, c := range cases {
		var out bytes.Buffer
		g := &got{}
		if err := testApp(&out, g).Run(append([]string{"tool"}, c.argv...)); err != nil {
			t.Errorf("%q: %v", c.argv, err)
			continue
		}
		if len(g.args) == 0 && len(c.args) == 0 {
			g.args = nil
		}
		if !reflect.DeepEqual(g.args, c.args) {
			t.Errorf("%q: args %q, want %q", c.argv, g.args, c.args)
		}
		for k, v := range c.vals {
			if !reflect.DeepEqual(g.vals[k], v) {
				t.Errorf("%q: %s = %#v, want %#v", c.argv, k, g.vals[k], v)
			}
		}
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("CLI_TEST_CONFIG", "/etc/x.conf")
	var out bytes.Buffer
	g := &got{}
	if err := testApp(&out, g).Run([]string{"tool", "files"}); err != nil || g.vals["config"] != "/etc/x.conf" {
		t.Fatalf("env: %v %v", err, g.vals["config"])
	}
	if err := testApp(&out, g).Run([]string{"tool", "files", "--config", "/c"}); err != nil || g.vals["config"] != "/c" {
		t.Fatalf("command line over env: %v %v", err, g.vals["config"])
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"files", "--bogus"}, "flag provided but not defined: --bogus"},
		{[]string{"files", "x", "-z"}, "flag provided but not defined: -z"},
		{[]string{"files", "--root"}, "flag needs an argument: --root"},
		{[]string{"files", "-n", "ten"}, `invalid value "ten" for flag -n`},
		{[]string{"files", "--json=maybe"}, `invalid value "maybe" for flag --json`},
		{[]string{"need"}, "required flag --to not set"},
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"sub", "nosuch"}, `unknown command "nosuch"`},
	} {
		var out bytes.Buffer
		err := testApp(&out, &got{}).Run(append([]string{"tool"}, c.argv...))
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want a *UsageError with %q", c.argv, err, c.want)
		}
	}
	// OnUsageError replaces the error.
	a := testApp(&bytes.Buffer{}, &got{})
	a.OnUsageError = func(_ *Context, err error, sub bool) error { return Exit("usage: "+err.Error(), 7) }
	var ec ExitCoder
	if err := a.Run([]string{"tool", "files", "--bogus"}); !errors.As(err, &ec) || ec.ExitCode() != 7 {
		t.Errorf("OnUsageError not used: %v", err)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, argv := range [][]string{{"--help"}, {"-h"}, {"files", "--help"}, {"files", "x", "-h"}, {"sub", "start", "--help"}, {"sub"}} {
		var out bytes.Buffer
		g := &got{}
		if err := testApp(&out, g).Run(append([]string{"tool"}, argv...)); err != nil {
			t.Errorf("%q: %v", argv, err)
		}
		if g.cmd != "" {
			t.Errorf("%q ran the action", argv)
		}
		if !strings.Contains(out.String(), "USAGE:") || !strings.Contains(out.String(), "--help, -h") {
			t.Errorf("%q: no help:\n%s", argv, out.String())
		}
	}
	var out bytes.Buffer
	testApp(&out, &got{}).Run([]string{"tool", "files", "--help"})
	for _, want := range []string{"tool files", "--root DIR", `(default: "/")`, "--yes, -y", "[$CLI_TEST_CONFIG]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("files --help lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	testApp(&out, &got{}).Run([]string{"tool", "--version"})
	if out.String() != "tool version 1.2\n" {
		t.Errorf("--version: %q", out.String())
	}
}

func TestMan(t *testing.T) {
	page, err := testApp(&bytes.Buffer{}, &got{}).ToMan()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`.TH "TOOL" 8`, ".SH COMMANDS", `.SS "tool sub start"`, `\-\-root DIR`} {
		if !strings.Contains(page, want) {
			t.Errorf("man page lacks %q:\n%s", want, page)
		}
	}
}
