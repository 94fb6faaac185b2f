package subhost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/rtnl"
)

// Actions exported to `!` helpers in $ACTION, as overlay-boot does.
const (
	ActionStart = "overlay-boot"
	ActionStop  = "overlay-stop"
)

// MaxNameLen is overlay-boot's limit on NAME: the host end of cable i is
// NAME followed by i, and an interface name has at most 15 characters.
const MaxNameLen = 12

// ConfigDir is where subhost configs named by their bare name live (the
// systemd unit's instance name is looked up there).
const ConfigDir = "/etc/ovpkg/subhosts"

// Defaults of overlay-boot 1.6.
const (
	DefaultStart       = "networking ssh"
	DefaultRAMSize     = "50M"
	DefaultStopTimeout = 10 * time.Second
	helperTimeout      = 60 * time.Second
)

// keys lists every key a config may set, in the order overlay-boot
// evaluates them (helpers run in this order).
var keys = []string{"NAME", "BASE", "LOWER", "UPPER", "WORK", "LIVE", "LOG", "CABLES", "START", "RAM_SIZE",
	"SHARE", "PREMOUNT", "POSTMOUNT", "INIT", "MEMORY", "CPU", "PIDS", "STOP_TIMEOUT"}

// Share is one SHARE entry: a host directory bound at a path of the subhost.
type Share struct {
	Host string `json:"host"`
	Sub  string `json:"subhost"`
}

// Vlan is a `BRIDGE=.N` entry: VLAN N on the cable before it.
type Vlan struct {
	ID     int    `json:"id"`
	Bridge string `json:"bridge,omitempty"`
}

// Cable is one CABLES entry: a veth pair, host end NAMEi, subhost end ethi.
type Cable struct {
	Index  int       `json:"index"`
	Bridge string    `json:"bridge,omitempty"` // "" = not attached (the host end is only brought up)
	MAC    *rtnl.MAC `json:"-"`                // the subhost end's address; nil = the kernel's
	Vlans  []Vlan    `json:"vlans,omitempty"`
}

// Host and Sub are the cable's interface names.
func (c Cable) Host(name string) string { return name + strconv.Itoa(c.Index) }
func (c Cable) Sub() string             { return "eth" + strconv.Itoa(c.Index) }

// Config is a subhost configuration file, resolved: defaults applied,
// relative paths made absolute, `!` helpers run.
type Config struct {
	Path      string // absolute path of the file
	Name      string
	Base      string
	Lower     string
	Upper     string
	Work      string
	Live      string
	Log       string
	Cables    []Cable
	Start     []string // services, in order; empty for none
	RAMSize   string   // tmpfs size of /run; "" = no tmpfs
	Shares    []Share
	Premount  string
	Postmount string
	Init      string
	Memory    int64 // memory.max in bytes; 0 = no limit
	CPU       int64 // cpu.max quota per 100000 µs period; 0 = no limit
	Pids      int64 // pids.max; 0 = no limit
	Stop      time.Duration

	// Lines maps each key set in the file to its (last) line number.
	Lines map[string]int
	// Helpers lists the keys whose value came from a `!` helper (or,
	// when helpers were not run, would have).
	Helpers map[string]bool
	// HelpersRun says the helpers were run (Options.Action was set).
	HelpersRun bool
	// Warnings are problems that do not stop the subhost (unknown keys,
	// keys set twice).
	Warnings []error
}

// Options tune LoadConfig.
type Options struct {
	// Action is exported to `!` helpers as $ACTION; "" means helpers are
	// not run and the values they would give are left empty (check).
	Action string
	// Stderr receives helpers' standard error; nil discards it.
	Stderr io.Writer
}

// ResolvePath turns the CONF argument into a config file path: a path
// (with a slash, or an existing file) as given, a bare name as
// /etc/ovpkg/subhosts/NAME.conf or /etc/ovpkg/subhosts/NAME.
func ResolvePath(arg string) string {
	if strings.Contains(arg, "/") {
		return arg
	}
	if _, err := os.Stat(arg); err == nil {
		return arg
	}
	for _, p := range []string{filepath.Join(ConfigDir, arg+".conf"), filepath.Join(ConfigDir, arg)} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return arg
}

type rawValue struct {
	value string
	line  int
}

// LoadConfig reads and resolves a subhost config file. Problems in the
// file itself are *config.Error values naming file and line.
func LoadConfig(path string, opt Options) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, &config.Error{Path: abs, Msg: "cannot read the subhost config", Err: err}
	}
	return ParseConfig(abs, data, opt)
}

// ParseConfig is LoadConfig on the file's contents.
func ParseConfig(path string, data []byte, opt Options) (*Config, error) {
	c := &Config{Path: path, Lines: map[string]int{}, Helpers: map[string]bool{}, HelpersRun: opt.Action != ""}
	vals := map[string]rawValue{}
	var shares []rawValue
	known := map[string]bool{}
	for _, k := range keys {
		known[k] = true
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		l := strings.TrimSpace(raw)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.ContainsRune(raw, 0) {
			return nil, &config.Error{Path: path, Line: n, Msg: "NUL byte in the line"}
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !validKey(k) {
			return nil, &config.Error{Path: path, Line: n, Msg: fmt.Sprintf("%q is not a KEY=VALUE assignment", short(l))}
		}
		v = unquote(v)
		if !known[k] {
			c.Warnings = append(c.Warnings, &config.Error{Path: path, Line: n, Msg: fmt.Sprintf("unknown key %s (ignored; known keys: %s)", k, strings.Join(keys, " "))})
			continue
		}
		if k == "SHARE" {
			shares = append(shares, rawValue{v, n})
			c.Lines[k] = n
			continue
		}
		if old, dup := vals[k]; dup {
			c.Warnings = append(c.Warnings, &config.Error{Path: path, Line: n, Msg: fmt.Sprintf("%s is set again (line %d); the last value counts", k, old.line)})
		}
		vals[k] = rawValue{v, n}
		c.Lines[k] = n
	}
	if err := sc.Err(); err != nil {
		return nil, &config.Error{Path: path, Line: n + 1, Msg: "unreadable line", Err: err}
	}
	dir := filepath.Dir(path)
	get := func(k, def string) (string, int, error) {
		rv, ok := vals[k]
		if !ok {
			return def, 0, nil
		}
		v, err := c.helper(k, rv, dir, opt)
		if err != nil {
			return "", rv.line, err
		}
		if v == "" {
			v = def
		}
		return v, rv.line, nil
	}
	bad := func(line int, format string, a ...any) error {
		return &config.Error{Path: path, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	var line int
	var err error
	def := strings.TrimSuffix(filepath.Base(path), ".conf")
	if c.Name, line, err = get("NAME", def); err != nil {
		return nil, err
	}
	if err := checkName(c.Name); err != nil && !(c.Helpers["NAME"] && opt.Action == "") {
		return nil, bad(line, "NAME=%s: %v", c.Name, err)
	}
	var base string
	if base, line, err = get("BASE", ""); err != nil {
		return nil, err
	}
	if base == "" && !c.Helpers["BASE"] {
		return nil, bad(0, "BASE is not set (it is required: the directory holding the subhost's root, work and live directories)")
	}
	c.Base = absFrom(dir, base)
	paths := []struct {
		key string
		dst *string
		def string
	}{
		{"LOWER", &c.Lower, "/"},
		{"UPPER", &c.Upper, filepath.Join(c.Base, "root")},
		{"WORK", &c.Work, filepath.Join(c.Base, "work")},
		{"LIVE", &c.Live, filepath.Join(c.Base, "live")},
		{"LOG", &c.Log, "/tmp/overlay-" + c.Name + ".log"},
	}
	for _, p := range paths {
		v, _, err := get(p.key, p.def)
		if err != nil {
			return nil, err
		}
		if v != "" {
			v = absFrom(c.Base, v)
		}
		*p.dst = v
	}
	cables, line, err := get("CABLES", "")
	if err != nil {
		return nil, err
	}
	if c.Cables, err = parseCables(cables); err != nil {
		return nil, bad(line, "CABLES: %v", err)
	}
	start, _, err := get("START", DefaultStart)
	if err != nil {
		return nil, err
	}
	if start != "none" {
		c.Start = strings.Fields(start)
	}
	for _, s := range c.Start {
		if strings.ContainsAny(s, "/\\") || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "-") {
			return nil, bad(c.Lines["START"], "START: %q is not a service name", s)
		}
	}
	if c.RAMSize, line, err = get("RAM_SIZE", DefaultRAMSize); err != nil {
		return nil, err
	}
	if c.RAMSize == "none" {
		c.RAMSize = ""
	} else if !c.Helpers["RAM_SIZE"] || opt.Action != "" {
		if err := checkTmpfsSize(c.RAMSize); err != nil {
			return nil, bad(line, "RAM_SIZE=%s: %v", c.RAMSize, err)
		}
	}
	for _, s := range shares {
		v, err := c.helper("SHARE", s, dir, opt)
		if err != nil {
			return nil, err
		}
		if v == "" {
			continue
		}
		h, sub, ok := strings.Cut(v, ":")
		if !ok {
			sub = h
		}
		if h == "" || sub == "" || !filepath.IsAbs(sub) || strings.Contains(sub, "..") {
			return nil, bad(s.line, "SHARE=%s: want DIR or HOSTDIR:SUBHOSTDIR, the subhost side an absolute path without ..", v)
		}
		c.Shares = append(c.Shares, Share{Host: absFrom(c.Base, h), Sub: filepath.Clean(sub)})
	}
	for _, h := range []struct {
		key string
		dst *string
	}{{"PREMOUNT", &c.Premount}, {"POSTMOUNT", &c.Postmount}, {"INIT", &c.Init}} {
		if *h.dst, _, err = get(h.key, ""); err != nil {
			return nil, err
		}
	}
	var v string
	if v, line, err = get("MEMORY", ""); err != nil {
		return nil, err
	}
	if c.Memory, err = parseBytes(v); err != nil {
		return nil, bad(line, "MEMORY=%s: %v", v, err)
	}
	if v, line, err = get("CPU", ""); err != nil {
		return nil, err
	}
	if c.CPU, err = parseCPU(v); err != nil {
		return nil, bad(line, "CPU=%s: %v", v, err)
	}
	if v, line, err = get("PIDS", ""); err != nil {
		return nil, err
	}
	if v != "" && v != "max" {
		if c.Pids, err = strconv.ParseInt(v, 10, 64); err != nil || c.Pids < 1 {
			return nil, bad(line, "PIDS=%s: want a number of processes (at least 1)", v)
		}
	}
	if v, line, err = get("STOP_TIMEOUT", ""); err != nil {
		return nil, err
	}
	c.Stop = DefaultStopTimeout
	if v != "" {
		if c.Stop, err = parseDuration(v); err != nil {
			return nil, bad(line, "STOP_TIMEOUT=%s: %v", v, err)
		}
	}
	return c, nil
}

// helper returns the value of one assignment, running it as a `!` helper
// when it starts with "!": /bin/sh -c CMD in the config's directory with
// $ACTION exported; the first line of its output is the value.
func (c *Config) helper(key string, rv rawValue, dir string, opt Options) (string, error) {
	if !strings.HasPrefix(rv.value, "!") {
		return rv.value, nil
	}
	c.Helpers[key] = true
	if opt.Action == "" {
		return "", nil
	}
	cmdline := strings.TrimSpace(rv.value[1:])
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ACTION="+opt.Action, "CONFIG="+c.Path)
	var se bytes.Buffer
	cmd.Stderr = &se
	if opt.Stderr != nil {
		cmd.Stderr = io.MultiWriter(&se, opt.Stderr)
	}
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(se.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg != "" {
			msg = " (" + msg + ")"
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer after %v", helperTimeout)
		}
		return "", &config.Error{Path: c.Path, Line: rv.line, Msg: fmt.Sprintf("%s helper %q failed%s", key, short(cmdline), msg), Err: err}
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first), nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i, r := range k {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// unquote strips one pair of matching surrounding quotes (a value is
// otherwise taken literally, as overlay-boot's sed does).
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

func short(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

func absFrom(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// checkName enforces what NAME must be to name interfaces, a network
// namespace, a cgroup and files: 1 to 12 characters of [A-Za-z0-9_-],
// not starting with '-'.
func checkName(n string) error {
	if n == "" {
		return errors.New("empty")
	}
	if len(n) > MaxNameLen {
		return fmt.Errorf("%d characters, at most %d (the host end of cable i is NAME followed by i, an interface name has at most 15)", len(n), MaxNameLen)
	}
	for _, r := range n {
		if !(r == '_' || r == '-' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return fmt.Errorf("%q is not allowed in a subhost name (letters, digits, _ and -)", r)
		}
	}
	if n[0] == '-' || n == "lo" {
		return fmt.Errorf("%q cannot name a subhost", n)
	}
	return nil
}

// parseCables reads CABLES: space-separated BRIDGE=MAC entries (either
// side may be empty, the '=' is required); BRIDGE=.N adds VLAN N on the
// cable before it.
func parseCables(v string) ([]Cable, error) {
	var out []Cable
	for _, f := range strings.Fields(v) {
		br, mac, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want BRIDGE=MAC (either may be empty, the '=' is required)", f)
		}
		if br != "" && (len(br) > rtnl.MaxNameLen || strings.ContainsAny(br, "/: ")) {
			return nil, fmt.Errorf("%q: %q is not an interface name", f, br)
		}
		if strings.HasPrefix(mac, ".") {
			id, err := strconv.Atoi(mac[1:])
			if err != nil || id < 1 || id > 4094 {
				return nil, fmt.Errorf("%q: VLAN id %q is not 1..4094", f, mac[1:])
			}
			if len(out) == 0 {
				return nil, fmt.Errorf("%q: a VLAN entry needs a cable before it", f)
			}
			last := &out[len(out)-1]
			for _, o := range last.Vlans {
				if o.ID == id {
					return nil, fmt.Errorf("%q: VLAN %d is already on cable %d", f, id, last.Index)
				}
			}
			last.Vlans = append(last.Vlans, Vlan{ID: id, Bridge: br})
			continue
		}
		c := Cable{Index: len(out), Bridge: br}
		if mac != "" {
			m, err := rtnl.ParseMAC(mac)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", f, err)
			}
			if m.Multicast() || m.Zero() {
				return nil, fmt.Errorf("%q: %s is a multicast or zero address, not one an interface can have", f, m)
			}
			c.MAC = &m
		}
		out = append(out, c)
	}
	return out, nil
}

// parseBytes reads 256M, 1G, 65536, 512k; "" and "max" are 0 (no limit).
func parseBytes(v string) (int64, error) {
	if v == "" || v == "max" || v == "none" {
		return 0, nil
	}
	mult := int64(1)
	switch strings.ToUpper(v[len(v)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	num := v
	if mult > 1 {
		num = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, errors.New("want a size such as 256M, 1G or a number of bytes")
	}
	return n * mult, nil
}

// checkTmpfsSize accepts what tmpfs's size= takes: a number with an
// optional k/m/g suffix, or a percentage.
func checkTmpfsSize(v string) error {
	if strings.HasSuffix(v, "%") {
		if n, err := strconv.Atoi(v[:len(v)-1]); err == nil && n > 0 && n <= 100 {
			return nil
		}
		return errors.New("want a percentage from 1% to 100%")
	}
	if _, err := parseBytes(v); err != nil || v == "max" {
		return errors.New("want a size such as 50M, a percentage such as 10%, or none")
	}
	return nil
}

// parseCPU reads "50%" (half a CPU), "1.5" (one and a half CPUs) or "max"
// into a cpu.max quota per 100 ms period.
func parseCPU(v string) (int64, error) {
	if v == "" || v == "max" || v == "none" {
		return 0, nil
	}
	var f float64
	var err error
	if strings.HasSuffix(v, "%") {
		f, err = strconv.ParseFloat(v[:len(v)-1], 64)
		f /= 100
	} else {
		f, err = strconv.ParseFloat(v, 64)
	}
	q := int64(f * 100000)
	if err != nil || q < 1000 || f > 4096 {
		return 0, errors.New("want a share of CPUs such as 50% or 1.5 (at least 1%)")
	}
	return q, nil
}

func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errors.New("want seconds (10) or a duration (1m30s)")
	}
	return d, nil
}
