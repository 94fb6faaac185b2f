package subhost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/rtnl"
)

// Problem is one thing check found. Warnings do not stop a start.
type Problem struct {
	Path    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Key     string `json:"key,omitempty"`
	Msg     string `json:"problem"`
	Warning bool   `json:"warning,omitempty"`
}

func (p Problem) Error() string {
	loc := p.Path
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.Path, p.Line)
	}
	kind := "error"
	if p.Warning {
		kind = "warning"
	}
	return fmt.Sprintf("%s: %s: %s", loc, kind, p.Msg)
}

// CheckOptions tune Check.
type CheckOptions struct {
	RunDir string
	// Card is the card's merged root when the subhost is to start over
	// it (--card); its root replaces LOWER.
	Card *Card
	// Starting is set when a start is about to follow: a running
	// subhost of the same name is then a problem.
	Starting bool
}

// Check reports every problem of cfg it can find without changing
// anything: directories, filesystems, bridges, addresses, names, limits.
// Values that come from `!` helpers are not checked when the helpers
// were not run.
func Check(cfg *Config, opt CheckOptions) []Problem {
	var ps []Problem
	add := func(key string, warning bool, format string, a ...any) {
		ps = append(ps, Problem{Path: cfg.Path, Line: cfg.Lines[key], Key: key, Msg: fmt.Sprintf(format, a...), Warning: warning})
	}
	for _, w := range cfg.Warnings {
		var ce *config.Error
		if errors.As(w, &ce) {
			ps = append(ps, Problem{Path: ce.Path, Line: ce.Line, Msg: ce.Msg, Warning: true})
		}
	}
	known := func(key string) bool { return !cfg.Helpers[key] || cfg.HelpersRun }
	dir := func(key, p string, mustWrite bool) bool {
		if !known(key) || p == "" {
			return false
		}
		st, err := os.Stat(p)
		switch {
		case err != nil:
			add(key, false, "%s %s: %v", key, p, errors.Unwrap(err))
			return false
		case !st.IsDir():
			add(key, false, "%s %s is not a directory", key, p)
			return false
		}
		if mustWrite && unix.Access(p, unix.W_OK) != nil {
			add(key, false, "%s %s is not writable", key, p)
		}
		return true
	}
	if known("BASE") {
		dir("BASE", cfg.Base, false)
	}
	lower := cfg.Lower
	if opt.Card != nil {
		lower = opt.Card.Root
		if cfg.Lines["LOWER"] > 0 && filepath.Clean(cfg.Lower) != filepath.Clean(lower) {
			add("LOWER", false, "LOWER=%s, but --card puts the subhost over the card's root %s", cfg.Lower, lower)
		}
	}
	lowerOK := dir("LOWER", lower, false)
	upperOK := dir("UPPER", cfg.Upper, true)
	workOK := dir("WORK", cfg.Work, true)
	liveOK := dir("LIVE", cfg.Live, false)
	if upperOK && workOK {
		var u, w unix.Stat_t
		if unix.Stat(cfg.Upper, &u) == nil && unix.Stat(cfg.Work, &w) == nil && u.Dev != w.Dev {
			add("WORK", false, "WORK %s is not on the filesystem of UPPER %s (overlayfs needs both on one filesystem)", cfg.Work, cfg.Upper)
		}
		if inside(cfg.Work, cfg.Upper) || inside(cfg.Upper, cfg.Work) {
			add("WORK", false, "WORK %s and UPPER %s lie inside one another", cfg.Work, cfg.Upper)
		}
	}
	if upperOK && lowerOK && filepath.Clean(cfg.Live) != filepath.Clean(lower) {
		var u, l unix.Stat_t
		if unix.Stat(cfg.Upper, &u) == nil && unix.Stat(lower, &l) == nil && u.Dev == l.Dev && inside(cfg.Upper, lower) {
			add("UPPER", false, "UPPER %s lies inside LOWER %s on the same filesystem (overlayfs refuses overlapping layers: put BASE on another filesystem)", cfg.Upper, lower)
		}
	}
	if liveOK && upperOK && (inside(cfg.Live, cfg.Upper) || inside(cfg.Upper, cfg.Live)) {
		add("LIVE", false, "LIVE %s and UPPER %s lie inside one another", cfg.Live, cfg.Upper)
	}
	if known("LOG") && cfg.Log != "" {
		if st, err := os.Stat(filepath.Dir(cfg.Log)); err != nil || !st.IsDir() {
			add("LOG", false, "LOG %s: its directory does not exist", cfg.Log)
		} else if st, err := os.Lstat(cfg.Log); err == nil && !st.Mode().IsRegular() {
			add("LOG", false, "LOG %s is not a regular file", cfg.Log)
		}
	}
	for _, s := range cfg.Shares {
		if st, err := os.Stat(s.Host); err != nil || !st.IsDir() {
			add("SHARE", false, "SHARE %s: no such directory on the host", s.Host)
		}
	}
	if lowerOK && known("START") && cfg.Init == "" {
		_, hasService := lookPathIn(lower, "service")
		for _, s := range cfg.Start {
			if _, err := os.Stat(filepath.Join(lower, "etc/init.d", s)); err != nil && !fileIn(cfg.Upper, "etc/init.d/"+s) {
				add("START", !hasService, "START: service %s has no /etc/init.d/%s in LOWER or UPPER", s, s)
			}
		}
	}
	if known("NAME") {
		if err := checkName(cfg.Name); err != nil {
			add("NAME", false, "NAME=%s: %v", cfg.Name, err)
		}
	}
	// Interfaces: names, bridges, addresses.
	var host *rtnl.Conn
	if len(cfg.Cables) > 0 {
		var err error
		if host, err = rtnl.Dial(); err != nil {
			add("CABLES", false, "cannot look at the host's interfaces: %v", err)
		} else {
			defer host.Close()
		}
	}
	macs := map[rtnl.MAC]string{}
	others := otherMACs(opt.RunDir, cfg.Name)
	for _, c := range cfg.Cables {
		hn := c.Host(cfg.Name)
		if len(hn) > rtnl.MaxNameLen {
			add("CABLES", false, "cable %d: interface name %s is longer than %d characters", c.Index, hn, rtnl.MaxNameLen)
		}
		if c.MAC != nil {
			if o, dup := macs[*c.MAC]; dup {
				add("CABLES", false, "cable %d: MAC %s is also given to %s", c.Index, c.MAC, o)
			}
			macs[*c.MAC] = "cable " + fmt.Sprint(c.Index)
			if o, ok := others[*c.MAC]; ok {
				add("CABLES", false, "cable %d: MAC %s is already used by %s", c.Index, c.MAC, o)
			}
		}
		bridges := []string{c.Bridge}
		for _, v := range c.Vlans {
			if n := fmt.Sprintf("%s.%d", hn, v.ID); len(n) > rtnl.MaxNameLen {
				add("CABLES", false, "cable %d: VLAN interface name %s is longer than %d characters", c.Index, n, rtnl.MaxNameLen)
			}
			bridges = append(bridges, v.Bridge)
		}
		if host == nil {
			continue
		}
		for _, b := range bridges {
			if b == "" {
				continue
			}
			l, err := host.LinkByName(b)
			switch {
			case errors.Is(err, rtnl.ErrNotFound):
				add("CABLES", false, "cable %d: bridge %s does not exist", c.Index, b)
			case err != nil:
				add("CABLES", false, "cable %d: bridge %s: %v", c.Index, b, err)
			case l.Kind != "bridge":
				add("CABLES", false, "cable %d: %s is a %q interface, not a bridge", c.Index, b, l.Kind)
			}
		}
		if opt.Starting {
			if _, err := host.LinkByName(hn); err == nil && !alive(opt.RunDir, cfg.Name) {
				st, _ := ReadState(opt.RunDir, cfg.Name)
				if st == nil || !hasCable(st, hn) {
					add("CABLES", false, "cable %d: interface %s already exists and is not this subhost's", c.Index, hn)
				}
			}
		}
	}
	// Limits.
	limits := Limits{Memory: cfg.Memory, CPU: cfg.CPU, Pids: cfg.Pids}
	if cs := limits.controllers(); len(cs) > 0 {
		root, err := cgroup2Root("/proc/self/mountinfo")
		if err != nil {
			add(limitKey(cfg), false, "%s: %v", strings.Join(cs, ", "), err)
		} else if miss := missingControllers(root, limits); len(miss) > 0 {
			add(limitKey(cfg), false, "the cgroup v2 controller(s) %s are not available in %s (bound to cgroup v1?)", strings.Join(miss, ", "), root)
		} else if why := populatedRoot(root, limits); why != "" {
			add(limitKey(cfg), false, "%s: %s", strings.Join(cs, ", "), why)
		}
	}
	if opt.Starting && opt.RunDir != "" && alive(opt.RunDir, cfg.Name) {
		add("NAME", false, "subhost %s is already running", cfg.Name)
	}
	if known("NAME") && opt.Starting {
		if _, err := os.Lstat(filepath.Join(NetnsDir, cfg.Name)); err == nil && !alive(opt.RunDir, cfg.Name) {
			if st, _ := ReadState(opt.RunDir, cfg.Name); st == nil || st.NetNS == "" {
				add("NAME", false, "network namespace %s/%s exists and is not this subhost's (ip netns delete %s)", NetnsDir, cfg.Name, cfg.Name)
			}
		}
	}
	return ps
}

func limitKey(cfg *Config) string {
	for _, k := range []string{"MEMORY", "CPU", "PIDS"} {
		if cfg.Lines[k] > 0 {
			return k
		}
	}
	return ""
}

// Errors returns the problems that are not warnings.
func Errors(ps []Problem) []Problem {
	var out []Problem
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

func inside(p, dir string) bool {
	p, dir = filepath.Clean(p), filepath.Clean(dir)
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

func fileIn(root, rel string) bool {
	if root == "" {
		return false
	}
	_, err := os.Lstat(filepath.Join(root, rel))
	return err == nil
}

func lookPathIn(root, name string) (string, bool) {
	for _, d := range filepath.SplitList(servicePath) {
		p := filepath.Join(root, d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, true
		}
	}
	return "", false
}

func hasCable(st *State, host string) bool {
	for _, c := range st.Cables {
		if c.Host == host {
			return true
		}
	}
	return false
}

// otherMACs are the fixed MAC addresses of the other subhosts that are up.
func otherMACs(runDir, self string) map[rtnl.MAC]string {
	out := map[rtnl.MAC]string{}
	if runDir == "" {
		return out
	}
	names, _ := Names(runDir)
	for _, n := range names {
		if n == self {
			continue
		}
		st, err := ReadState(runDir, n)
		if err != nil || !needsCleanup(st) {
			continue
		}
		for _, c := range st.Cables {
			if m, err := rtnl.ParseMAC(c.MAC); err == nil {
				out[m] = "subhost " + n + " (" + c.Sub + ")"
			}
		}
	}
	return out
}
