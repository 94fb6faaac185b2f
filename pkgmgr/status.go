package pkgmgr

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Package is one entry of a package database (or of a plan).
type Package struct {
	Name          string   `json:"name"`
	Version       string   `json:"version"`
	Old           string   `json:"old_version,omitempty"` // in a plan: the version this one replaces
	Arch          string   `json:"arch,omitempty"`
	State         string   `json:"state,omitempty"`   // dpkg/opkg status word: installed, unpacked, half-configured, config-files...
	InstalledSize int64    `json:"installed_size"`    // bytes
	Depends       string   `json:"depends,omitempty"` // Pre-Depends and Depends, comma-joined
	Provides      []string `json:"provides,omitempty"`
	Essential     bool     `json:"essential,omitempty"`
	Conffiles     []string `json:"conffiles,omitempty"`
}

// Installed reports whether the package's files are on the system (any
// state except not-installed and config-files).
func (p Package) Installed() bool {
	switch p.State {
	case "", "not-installed", "config-files":
		return false
	}
	return true
}

// Broken reports whether the package manager stopped half-way through it
// (unpacked but not configured, half-installed, triggers pending...).
func (p Package) Broken() bool {
	switch p.State {
	case "", "installed", "not-installed", "config-files":
		return false
	}
	return true
}

// Key is the name plus, when set, the architecture ("libc6:amd64");
// architecture-independent packages ("all" for dpkg and opkg, "noarch"
// for apk) are keyed by name alone.
func (p Package) Key() string {
	if p.Arch == "" || p.Arch == "all" || p.Arch == "noarch" {
		return p.Name
	}
	return p.Name + ":" + p.Arch
}

// ParseDpkgStatus reads /var/lib/dpkg/status (Installed-Size in KiB).
// Entries in state not-installed are dropped.
func ParseDpkgStatus(source string, r io.Reader) ([]Package, error) {
	return parseStatus(source, r, 1024)
}

// ParseOpkgStatus reads opkg's status file (/usr/lib/opkg/status on
// OpenWrt; Installed-Size in bytes).
func ParseOpkgStatus(source string, r io.Reader) ([]Package, error) {
	return parseStatus(source, r, 1)
}

func parseStatus(source string, r io.Reader, sizeUnit int64) ([]Package, error) {
	st, err := ParseStanzas(source, r)
	if err != nil {
		return nil, err
	}
	out := make([]Package, 0, len(st))
	for _, s := range st {
		p, err := packageFromStanza(source, s, sizeUnit)
		if err != nil {
			return nil, err
		}
		if p.State == "not-installed" {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

func packageFromStanza(source string, s Stanza, sizeUnit int64) (Package, error) {
	p := Package{
		Name:    s.Get("Package"),
		Version: s.Get("Version"),
		Arch:    s.Get("Architecture"),
		Depends: joinNonEmpty(s.Get("Pre-Depends"), s.Get("Depends")),
	}
	for _, v := range strings.Split(s.Get("Provides"), ",") {
		if f := strings.Fields(v); len(f) > 0 {
			p.Provides = append(p.Provides, f[0])
		}
	}
	if p.Name == "" {
		return p, &SyntaxError{source, s.Line, "stanza without a Package field"}
	}
	p.Essential = strings.EqualFold(s.Get("Essential"), "yes")
	if st := strings.Fields(s.Get("Status")); len(st) == 3 {
		p.State = st[2]
	} else if len(st) != 0 {
		return p, &SyntaxError{source, s.Line, fmt.Sprintf("package %s: Status %q is not three words", p.Name, s.Get("Status"))}
	}
	if v := s.Get("Installed-Size"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return p, &SyntaxError{source, s.Line, fmt.Sprintf("package %s: bad Installed-Size %q", p.Name, v)}
		}
		p.InstalledSize = n * sizeUnit
	}
	for _, l := range strings.Split(s.Get("Conffiles"), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			p.Conffiles = append(p.Conffiles, f[0])
		}
	}
	return p, nil
}

// Index maps Key() and, where unambiguous, the bare name to packages.
type Index map[string]Package

// NewIndex indexes pkgs by Key() and by bare name.
func NewIndex(pkgs []Package) Index {
	ix := Index{}
	count := map[string]int{}
	for _, p := range pkgs {
		count[p.Name]++
	}
	for _, p := range pkgs {
		ix[p.Key()] = p
		if count[p.Name] == 1 {
			ix[p.Name] = p
		}
	}
	return ix
}

// Lookup finds name ("pkg" or "pkg:arch").
func (ix Index) Lookup(name string) (Package, bool) {
	p, ok := ix[name]
	return p, ok
}

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ", " + b
}

// depName is the package name of one alternative of a dependency
// ("libc6 (>= 2.36)" -> "libc6", "python3:any" -> "python3").
func depName(alt string) string {
	f := strings.Fields(alt)
	if len(f) == 0 {
		return ""
	}
	n, _, _ := strings.Cut(f[0], ":")
	return n
}

// planRemove is PlanRemove for every adapter: from the status database,
// the packages named and every dependant left without an alternative.
func planRemove(m Manager, args []string) (*Plan, error) {
	if err := checkNames(args); err != nil {
		return nil, err
	}
	installed, err := Installed(m)
	if err != nil {
		return nil, err
	}
	rm, err := RemovalClosure(installed, args)
	if err != nil {
		return nil, err
	}
	return &Plan{Remove: rm}, nil
}

// RemovalClosure returns names plus every installed package that depends
// on them (transitively) with no installed alternative left: what a
// package manager has to remove with them. A name that is not installed
// is ErrNotInstalled.
func RemovalClosure(installed []Package, names []string) ([]Package, error) {
	byName := map[string][]Package{}
	for _, p := range installed {
		if p.Installed() {
			byName[p.Name] = append(byName[p.Name], p)
		}
	}
	gone := map[string]bool{}
	var out []Package
	for _, n := range names {
		name, arch, _ := strings.Cut(n, ":")
		found := false
		for _, p := range byName[name] {
			if arch == "" || p.Arch == arch {
				if !gone[p.Key()] {
					out = append(out, p)
				}
				gone[p.Key()] = true
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: %w", n, ErrNotInstalled)
		}
	}
	// provided: names (real and virtual) still there.
	provided := func(name string) bool {
		for _, p := range byName[name] {
			if !gone[p.Key()] {
				return true
			}
		}
		for _, p := range installed {
			if p.Installed() && !gone[p.Key()] {
				for _, v := range p.Provides {
					if v == name {
						return true
					}
				}
			}
		}
		return false
	}
	for changed := true; changed; {
		changed = false
		for _, p := range installed {
			if !p.Installed() || gone[p.Key()] {
				continue
			}
			for _, group := range strings.Split(p.Depends, ",") {
				if strings.TrimSpace(group) == "" {
					continue
				}
				met := false
				for _, alt := range strings.Split(group, "|") {
					if provided(depName(alt)) {
						met = true
						break
					}
				}
				if !met {
					gone[p.Key()] = true
					out = append(out, p)
					changed = true
					break
				}
			}
		}
	}
	return out, nil
}

// NewlyBroken lists the packages of after that the package manager left
// half-done (Broken: unpacked, half-installed...) and that were not so in
// before: a run that exited 0 but did not finish (opkg prints "Collected
// errors" and exits 0 when a package's postinst fails on a later run).
func NewlyBroken(before, after []Package) []Package {
	was := map[string]bool{}
	for _, p := range before {
		if p.Broken() {
			was[p.Key()+" "+p.Version] = true
		}
	}
	var out []Package
	for _, p := range after {
		if p.Broken() && !was[p.Key()+" "+p.Version] {
			out = append(out, p)
		}
	}
	return out
}
