package cli

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// Flag is one option of a command. The suite's flag types are
// BoolFlag, StringFlag, IntFlag, Int64Flag, UintFlag, DurationFlag and
// StringSliceFlag; parsed values live in the Context, never in the Flag,
// so one Flag value may serve several commands.
type Flag interface {
	// Names returns the flag's name first, then its aliases.
	Names() []string
	// TakesValue is false for a switch (bool flag).
	TakesValue() bool
	// GetUsage is the help text (a `word` in backquotes names the value).
	GetUsage() string
	// IsVisible is false for hidden flags.
	IsVisible() bool
	common() *flagCommon
	// parse converts one command-line value; prev is the value so far
	// (repeatable flags append to it).
	parse(s string, prev any) (any, error)
	defaultValue() any
}

type flagCommon struct {
	name     string
	aliases  []string
	envVars  []string
	required bool
}

func names(name string, aliases []string) []string { return append([]string{name}, aliases...) }

// BoolFlag is a switch: --name, or --name=false.
type BoolFlag struct {
	Name    string
	Aliases []string
	Usage   string
	Value   bool
	Hidden  bool
	EnvVars []string
}

func (f *BoolFlag) Names() []string                    { return names(f.Name, f.Aliases) }
func (f *BoolFlag) TakesValue() bool                   { return false }
func (f *BoolFlag) GetUsage() string                   { return f.Usage }
func (f *BoolFlag) IsVisible() bool                    { return !f.Hidden }
func (f *BoolFlag) common() *flagCommon                { return &flagCommon{f.Name, f.Aliases, f.EnvVars, false} }
func (f *BoolFlag) defaultValue() any                  { return f.Value }
func (f *BoolFlag) parse(s string, _ any) (any, error) { return strconv.ParseBool(s) }

// StringFlag takes a string: --name VALUE or --name=VALUE.
type StringFlag struct {
	Name     string
	Aliases  []string
	Usage    string
	Value    string
	Hidden   bool
	EnvVars  []string
	Required bool
}

func (f *StringFlag) Names() []string  { return names(f.Name, f.Aliases) }
func (f *StringFlag) TakesValue() bool { return true }
func (f *StringFlag) GetUsage() string { return f.Usage }
func (f *StringFlag) IsVisible() bool  { return !f.Hidden }
func (f *StringFlag) common() *flagCommon {
	return &flagCommon{f.Name, f.Aliases, f.EnvVars, f.Required}
}
func (f *StringFlag) defaultValue() any                  { return f.Value }
func (f *StringFlag) parse(s string, _ any) (any, error) { return s, nil }

// IntFlag takes an integer (decimal, 0x hex or 0 octal).
type IntFlag struct {
	Name     string
	Aliases  []string
	Usage    string
	Value    int
	Hidden   bool
	EnvVars  []string
	Required bool
}

func (f *IntFlag) Names() []string     { return names(f.Name, f.Aliases) }
func (f *IntFlag) TakesValue() bool    { return true }
func (f *IntFlag) GetUsage() string    { return f.Usage }
func (f *IntFlag) IsVisible() bool     { return !f.Hidden }
func (f *IntFlag) common() *flagCommon { return &flagCommon{f.Name, f.Aliases, f.EnvVars, f.Required} }
func (f *IntFlag) defaultValue() any   { return f.Value }
func (f *IntFlag) parse(s string, _ any) (any, error) {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	return int(n), err
}

// Int64Flag takes a 64-bit integer.
type Int64Flag struct {
	Name     string
	Aliases  []string
	Usage    string
	Value    int64
	Hidden   bool
	EnvVars  []string
	Required bool
}

func (f *Int64Flag) Names() []string  { return names(f.Name, f.Aliases) }
func (f *Int64Flag) TakesValue() bool { return true }
func (f *Int64Flag) GetUsage() string { return f.Usage }
func (f *Int64Flag) IsVisible() bool  { return !f.Hidden }
func (f *Int64Flag) common() *flagCommon {
	return &flagCommon{f.Name, f.Aliases, f.EnvVars, f.Required}
}
func (f *Int64Flag) defaultValue() any { return f.Value }
func (f *Int64Flag) parse(s string, _ any) (any, error) {
	return strconv.ParseInt(s, 0, 64)
}

// UintFlag takes a non-negative integer.
type UintFlag struct {
	Name     string
	Aliases  []string
	Usage    string
	Value    uint
	Hidden   bool
	EnvVars  []string
	Required bool
}

func (f *UintFlag) Names() []string     { return names(f.Name, f.Aliases) }
func (f *UintFlag) TakesValue() bool    { return true }
func (f *UintFlag) GetUsage() string    { return f.Usage }
func (f *UintFlag) IsVisible() bool     { return !f.Hidden }
func (f *UintFlag) common() *flagCommon { return &flagCommon{f.Name, f.Aliases, f.EnvVars, f.Required} }
func (f *UintFlag) defaultValue() any   { return f.Value }
func (f *UintFlag) parse(s string, _ any) (any, error) {
	n, err := strconv.ParseUint(s, 0, strconv.IntSize)
	return uint(n), err
}

// DurationFlag takes a Go duration ("1.5s", "2m").
type DurationFlag struct {
	Name     string
	Aliases  []string
	Usage    string
	Value    time.Duration
	Hidden   bool
	EnvVars  []string
	Required bool
}

func (f *DurationFlag) Names() []string  { return names(f.Name, f.Aliases) }
func (f *DurationFlag) TakesValue() bool { return true }
func (f *DurationFlag) GetUsage() string { return f.Usage }
func (f *DurationFlag) IsVisible() bool  { return !f.Hidden }
func (f *DurationFlag) common() *flagCommon {
	return &flagCommon{f.Name, f.Aliases, f.EnvVars, f.Required}
}
func (f *DurationFlag) defaultValue() any { return f.Value }
func (f *DurationFlag) parse(s string, _ any) (any, error) {
	return time.ParseDuration(s)
}

// StringSliceFlag may be given several times; each value is kept, in
// order. A value from the environment is split at commas.
type StringSliceFlag struct {
	Name     string
	Aliases  []string
	Usage    string
	Value    []string
	Hidden   bool
	EnvVars  []string
	Required bool
}

func (f *StringSliceFlag) Names() []string  { return names(f.Name, f.Aliases) }
func (f *StringSliceFlag) TakesValue() bool { return true }
func (f *StringSliceFlag) GetUsage() string { return f.Usage }
func (f *StringSliceFlag) IsVisible() bool  { return !f.Hidden }
func (f *StringSliceFlag) common() *flagCommon {
	return &flagCommon{f.Name, f.Aliases, f.EnvVars, f.Required}
}
func (f *StringSliceFlag) defaultValue() any { return append([]string{}, f.Value...) }
func (f *StringSliceFlag) parse(s string, prev any) (any, error) {
	p, _ := prev.([]string)
	return append(append([]string{}, p...), s), nil
}

// Duration returns a duration flag's value.
func (c *Context) Duration(name string) time.Duration {
	d, _ := c.Value(name).(time.Duration)
	return d
}

// parsed is the result of parsing one command's command line.
type parsed struct {
	vals          map[string]any
	set           map[string]bool
	args          []string
	help, version bool
}

func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// parse reads flags and arguments. With interleave, flags may come
// anywhere until `--`; without, the first argument ends the flags (a
// command whose first argument names a subcommand). -h/--help (and
// -v/--version with version) are understood unless a flag takes those
// names.
func parse(flags []Flag, args []string, interleave, version bool) (*parsed, error) {
	p := &parsed{vals: map[string]any{}, set: map[string]bool{}}
	byName := map[string]Flag{}
	for _, f := range flags {
		p.vals[f.Names()[0]] = f.defaultValue()
		for _, n := range f.Names() {
			byName[n] = f
		}
	}
	// A single-valued flag given twice keeps the last value (as getopt);
	// a repeatable one collects them.
	seenSlice := map[string]bool{}
	setFlag := func(f Flag, shown, val string) error {
		key := f.Names()[0]
		prev := p.vals[key]
		if _, ok := f.(*StringSliceFlag); ok && !seenSlice[key] {
			prev = nil // command-line values replace the default
			seenSlice[key] = true
		}
		v, err := f.parse(val, prev)
		if err != nil {
			return usageErr("invalid value %q for flag %s: %v", val, shown, unwrapNum(err))
		}
		p.vals[key] = v
		p.set[key] = true
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.args = append(p.args, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			if !interleave {
				p.args = append(p.args, args[i:]...)
				break
			}
			p.args = append(p.args, a)
			continue
		}
		name, val, hasVal := strings.TrimLeft(a, "-"), "", false
		if j := strings.IndexByte(name, '='); j >= 0 {
			name, val, hasVal = name[:j], name[j+1:], true
		}
		f := byName[name]
		if f == nil {
			switch {
			case name == "help" || name == "h":
				p.help = true
				continue
			case version && (name == "version" || name == "v"):
				p.version = true
				continue
			}
			// -abc: a cluster of one-letter switches.
			if !strings.HasPrefix(a, "--") && !hasVal && len(name) > 1 && clusterOK(byName, name) {
				for _, r := range name {
					if err := setFlag(byName[string(r)], "-"+string(r), "true"); err != nil {
						return p, err
					}
				}
				continue
			}
			return p, usageErr("flag provided but not defined: %s", a)
		}
		shown := dashes(name)
		if !f.TakesValue() {
			if !hasVal {
				val = "true"
			}
			if err := setFlag(f, shown, val); err != nil {
				return p, err
			}
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return p, usageErr("flag needs an argument: %s", shown)
			}
			i++
			val = args[i]
		}
		if err := setFlag(f, shown, val); err != nil {
			return p, err
		}
	}
	// Environment variables fill what the command line left unset.
	for _, f := range flags {
		key := f.Names()[0]
		if p.set[key] {
			continue
		}
		for _, e := range f.common().envVars {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			if _, slice := f.(*StringSliceFlag); slice {
				var out []string
				for _, s := range strings.Split(v, ",") {
					if s = strings.TrimSpace(s); s != "" {
						out = append(out, s)
					}
				}
				p.vals[key], p.set[key] = out, true
				break
			}
			if err := setFlag(f, "$"+e, v); err != nil {
				return p, err
			}
			break
		}
	}
	return p, nil
}

func (p *parsed) checkRequired(flags []Flag) error {
	if p.help || p.version {
		return nil
	}
	for _, f := range flags {
		if f.common().required && !p.set[f.Names()[0]] {
			return usageErr("required flag %s not set", dashes(f.Names()[0]))
		}
	}
	return nil
}

// clusterOK reports whether every letter of s is a one-letter switch.
func clusterOK(byName map[string]Flag, s string) bool {
	for _, r := range s {
		f := byName[string(r)]
		if f == nil || f.TakesValue() {
			return false
		}
	}
	return true
}

// unwrapNum drops strconv's "strconv.ParseInt: parsing "x": " prefix.
func unwrapNum(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		return ne.Err
	}
	return err
}
