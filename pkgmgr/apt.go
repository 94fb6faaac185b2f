package pkgmgr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Apt drives apt-get and dpkg (Debian and derivatives).
type Apt struct {
	root string
	x    Exec
}

// NewApt returns the apt/dpkg adapter for root; x runs helper commands.
func NewApt(root string, x Exec) *Apt { return &Apt{root: root, x: x} }

func aptPresent(root string) bool {
	return exists(filepath.Join(root, "var/lib/dpkg/status")) &&
		(exists(filepath.Join(root, "usr/bin/dpkg")) || exists(filepath.Join(root, "bin/dpkg")))
}

func (a *Apt) Name() string        { return "apt" }
func (a *Apt) Root() string        { return a.root }
func (a *Apt) StatusPath() string  { return "var/lib/dpkg/status" }
func (a *Apt) RecoverHint() string { return "ovpkg configure" }

func (a *Apt) ParseStatus(source string, r io.Reader) ([]Package, error) {
	return ParseDpkgStatus(source, r)
}

// Files reads var/lib/dpkg/info/<pkg>.list (or <pkg>:<arch>.list).
func (a *Apt) Files(pkg string) ([]string, error) {
	if err := checkPackageName(pkg); err != nil {
		return nil, err
	}
	info := filepath.Join(a.root, "var/lib/dpkg/info")
	cands := []string{filepath.Join(info, pkg+".list")}
	if !strings.Contains(pkg, ":") {
		m, _ := filepath.Glob(filepath.Join(info, pkg+":*.list"))
		cands = append(cands, m...)
	}
	for _, c := range cands {
		f, err := os.Open(c)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readList(f)
	}
	return nil, fmt.Errorf("%s: %w (no %s/%s.list)", pkg, ErrNotInstalled, info, pkg)
}

// readList reads a file list: one path per line (opkg may add a tab and
// more fields).
func readList(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		if i := strings.IndexByte(l, '\t'); i >= 0 {
			l = l[:i]
		}
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

func (a *Apt) Argv(op Op, args []string, o ArgvOptions) ([]string, error) {
	if op != OpRaw {
		if err := checkNames(args); err != nil {
			return nil, err
		}
	}
	y := func(v []string) []string {
		if o.Yes {
			return append(v, "-y")
		}
		return v
	}
	switch op {
	case OpInstall:
		if len(args) == 0 {
			return nil, errors.New("install: no packages given")
		}
		files, err := absFiles(args)
		if err != nil {
			return nil, err
		}
		return append(y([]string{"apt-get", "install"}), files...), nil
	case OpRemove, OpPurge:
		// dpkg, not apt-get: args are the exact set PlanRemove
		// computed (dependants included), and dpkg refuses rather than
		// widening it; it also needs no package lists.
		if len(args) == 0 {
			return nil, fmt.Errorf("%s: no packages given", op)
		}
		return append([]string{"dpkg", "--" + string(op)}, args...), nil
	case OpUpdate:
		if len(args) != 0 {
			return nil, errors.New("update takes no packages")
		}
		return []string{"apt-get", "update"}, nil
	case OpUpgrade:
		if len(args) == 0 {
			return y([]string{"apt-get", "upgrade"}), nil
		}
		return append(y([]string{"apt-get", "install", "--only-upgrade"}), args...), nil
	case OpConfigure:
		return []string{"dpkg", "--configure", "-a"}, nil
	case OpRaw:
		return append([]string{"apt-get"}, args...), nil
	}
	return nil, fmt.Errorf("apt: unknown operation %q", op)
}

// aptLine matches apt-get -s lines: "Inst name [old] (new origin [arch])",
// "Remv name [old]".
var aptLine = regexp.MustCompile(`^(Inst|Remv|Conf|Purg) (\S+)(?: \[([^\]]*)\])?(?: \((\S+)(.*?)\))?`)

// SimAction is one line of apt-get -s output.
type SimAction struct {
	Action  string // Inst, Remv, Purg
	Name    string // may carry ":arch"
	Old     string // version being replaced/removed
	Version string // version being installed
	Arch    string
}

// ParseAptSimulation reads `apt-get -s` output.
func ParseAptSimulation(r io.Reader) ([]SimAction, error) {
	var out []SimAction
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := aptLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] == "Conf" {
			continue
		}
		s := SimAction{Action: m[1], Name: m[2], Old: m[3], Version: m[4]}
		if i := strings.LastIndex(m[5], "["); i >= 0 {
			s.Arch = strings.TrimSuffix(strings.TrimSpace(m[5][i+1:]), "]")
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// aptError turns apt-get's failure into one of ours: "Unable to locate
// package" and friends become ErrUnknownPackage.
func aptError(err error) error {
	var ce *CommandError
	if !errors.As(err, &ce) {
		return err
	}
	msg := firstErrorLine(ce.Stderr + "\n" + ce.Stdout)
	for _, p := range []string{"Unable to locate package", "has no installation candidate", "Couldn't find any package"} {
		if strings.Contains(msg, p) {
			return fmt.Errorf("%s: %w", strings.TrimPrefix(msg, "E: "), ErrUnknownPackage)
		}
	}
	if strings.Contains(msg, "Invalid archive") || strings.Contains(msg, "not a Debian format archive") ||
		strings.Contains(msg, "Could not read meta data") {
		return fmt.Errorf("%s: %w", strings.TrimPrefix(msg, "E: "), ErrBadArchive)
	}
	return err
}

// DebInfo is what dpkg-deb says about a local .deb.
type DebInfo struct {
	Path    string
	Pkg     Package
	Control Stanza   // the fields asked for
	Paths   []string // non-directory entries, "usr/bin/x"
	Dirs    []string // directory entries
}

// InspectDeb reads a local .deb's control fields and contents with
// dpkg-deb; a corrupt file is ErrBadArchive.
func InspectDeb(ctx context.Context, x Exec, path string) (*DebInfo, error) {
	out, _, err := x(ctx, []string{"dpkg-deb", "--field", path, "Package", "Version", "Architecture", "Installed-Size",
		"Depends", "Pre-Depends", "Conflicts", "Breaks"})
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && ce.Code > 0 {
			return nil, fmt.Errorf("%s: %w: %s", path, ErrBadArchive, firstErrorLine(ce.Stderr))
		}
		return nil, err
	}
	st, err := ParseStanzas(path, bytes.NewReader(out))
	if err != nil || len(st) != 1 {
		return nil, fmt.Errorf("%s: %w: unreadable control fields", path, ErrBadArchive)
	}
	p, err := packageFromStanza(path, st[0], 1024)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrBadArchive, err)
	}
	out, _, err = x(ctx, []string{"dpkg-deb", "--contents", path})
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && ce.Code > 0 {
			return nil, fmt.Errorf("%s: %w: %s", path, ErrBadArchive, firstErrorLine(ce.Stderr))
		}
		return nil, err
	}
	files, dirs, err := ParseDebContents(bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrBadArchive, err)
	}
	return &DebInfo{Path: path, Pkg: p, Control: st[0], Paths: files, Dirs: dirs}, nil
}

// ParseDebContents reads `dpkg-deb --contents` (tar -tv style) output and
// returns the non-directory and the directory entries, as paths relative
// to the root without "./" ("usr/bin/hello").
func ParseDebContents(r io.Reader) (files, dirs []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		l := sc.Text()
		if strings.TrimSpace(l) == "" {
			continue
		}
		// mode owner/group size date time name[ -> target | link to target]
		f := strings.Fields(l)
		if len(f) < 6 || len(f[0]) != 10 {
			return nil, nil, fmt.Errorf("contents line %d: %q", n, clip(l, 80))
		}
		name := l
		for i := 0; i < 5; i++ { // skip five fields and the spaces after each
			name = strings.TrimLeft(name, " ")
			j := strings.IndexByte(name, ' ')
			name = name[j:]
		}
		name = strings.TrimLeft(name, " ")
		switch f[0][0] {
		case 'l':
			name, _, _ = strings.Cut(name, " -> ")
		case 'h':
			name, _, _ = strings.Cut(name, " link to ")
		}
		name = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(name, "."), "/"), "/")
		if name == "" {
			continue
		}
		if f[0][0] == 'd' {
			dirs = append(dirs, name)
		} else {
			files = append(files, name)
		}
	}
	return files, dirs, sc.Err()
}

func (a *Apt) PlanInstall(ctx context.Context, args []string, download bool) (*Plan, error) {
	if err := checkNames(args); err != nil {
		return nil, err
	}
	args, err := absFiles(args)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Paths: map[string][]string{}, Dirs: map[string][]string{}}
	local := map[string]*DebInfo{} // package name -> local file
	for _, arg := range args {
		if !isFileArg(arg) {
			continue
		}
		if _, err := os.Stat(arg); err != nil {
			return nil, fmt.Errorf("package file %s: %w", arg, err)
		}
		di, err := InspectDeb(ctx, a.x, arg)
		if err != nil {
			return nil, err
		}
		local[di.Pkg.Name] = di
		plan.Archives = append(plan.Archives, arg)
	}
	if len(local) == len(args) && a.selfContained(local) {
		// Local files whose dependencies are all met by name, without
		// version constraints, and that conflict with nothing: apt would
		// install exactly these. Skipping apt-get -s saves a full read
		// of the package lists (seconds on a small device).
		for _, di := range local {
			plan.Install = append(plan.Install, di.Pkg)
			plan.InstallSize += di.Pkg.InstalledSize
			plan.Paths[di.Pkg.Key()], plan.Dirs[di.Pkg.Key()] = di.Paths, di.Dirs
		}
		sort.Slice(plan.Install, func(i, j int) bool { return plan.Install[i].Name < plan.Install[j].Name })
		return plan, nil
	}
	return a.planSimulated(ctx, plan, local, []string{"install"}, args, download)
}

// PlanUpgrade is PlanInstall for `apt-get upgrade` (no args) or
// `apt-get install --only-upgrade ARGS`.
func (a *Apt) PlanUpgrade(ctx context.Context, args []string, download bool) (*Plan, error) {
	if err := checkNames(args); err != nil {
		return nil, err
	}
	verb := []string{"upgrade"}
	if len(args) > 0 {
		verb = []string{"install", "--only-upgrade"}
	}
	plan := &Plan{Paths: map[string][]string{}, Dirs: map[string][]string{}}
	return a.planSimulated(ctx, plan, map[string]*DebInfo{}, verb, args, download)
}

// planSimulated fills plan from `apt-get -s VERB ARGS`, apt-cache sizes
// and, with download, the fetched archives' contents.
func (a *Apt) planSimulated(ctx context.Context, plan *Plan, local map[string]*DebInfo, verb, args []string, download bool) (*Plan, error) {
	out, _, err := a.x(ctx, append(append([]string{"apt-get", "-s", "-q"}, verb...), args...))
	if err != nil {
		return nil, aptError(err)
	}
	sim, err := ParseAptSimulation(bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	var query []string
	for _, s := range sim {
		name, _, _ := strings.Cut(s.Name, ":")
		switch s.Action {
		case "Inst":
			if di, ok := local[name]; ok {
				p := di.Pkg
				plan.Install = append(plan.Install, p)
				plan.Paths[p.Key()], plan.Dirs[p.Key()] = di.Paths, di.Dirs
				continue
			}
			plan.Install = append(plan.Install, Package{Name: name, Version: s.Version, Arch: s.Arch})
			q := name
			if s.Arch != "" {
				q += ":" + s.Arch
			}
			query = append(query, q+"="+s.Version)
		case "Remv", "Purg":
			plan.Remove = append(plan.Remove, Package{Name: name, Version: s.Old})
		}
	}
	files := map[string]string{} // key -> archive file name in the cache
	if len(query) > 0 {
		out, _, err := a.x(ctx, append([]string{"apt-cache", "show", "--no-all-versions"}, query...))
		if err != nil {
			return nil, aptError(err)
		}
		st, err := ParseStanzas("apt-cache show", bytes.NewReader(out))
		if err != nil {
			return nil, err
		}
		for _, s := range st {
			p, err := packageFromStanza("apt-cache show", s, 1024)
			if err != nil {
				return nil, err
			}
			size, _ := strconv.ParseInt(s.Get("Size"), 10, 64)
			for i := range plan.Install {
				q := &plan.Install[i]
				if q.Name == p.Name && q.Version == p.Version && (q.Arch == "" || q.Arch == p.Arch) {
					q.InstalledSize = p.InstalledSize
					q.Arch = p.Arch
					files[q.Key()] = filepath.Base(s.Get("Filename"))
					cached := filepath.Join(a.root, "var/cache/apt/archives", files[q.Key()])
					if !exists(cached) {
						plan.DownloadSize += size
					}
				}
			}
		}
	}
	for _, p := range plan.Install {
		plan.InstallSize += p.InstalledSize
	}
	if !download || len(query) == 0 {
		return plan, nil
	}
	// Fetch the archives (into var/cache/apt/archives: through the overlay,
	// onto the card) and read each one's contents.
	cache := filepath.Join(a.root, "var/cache/apt/archives")
	before := map[string]bool{}
	for _, f := range files {
		before[f] = exists(filepath.Join(cache, f))
	}
	fetch := append(append([]string{"apt-get"}, verb...), "--download-only", "-y", "-q")
	if _, _, err := a.x(ctx, append(fetch, args...)); err != nil {
		return nil, aptError(err)
	}
	for _, p := range plan.Install {
		f, ok := files[p.Key()]
		if !ok || f == "" {
			continue
		}
		path := filepath.Join(cache, f)
		if !before[f] && exists(path) {
			plan.Fetched = append(plan.Fetched, path)
		}
		di, err := InspectDeb(ctx, a.x, path)
		if err != nil {
			return nil, err
		}
		plan.Archives = append(plan.Archives, path)
		plan.Paths[p.Key()], plan.Dirs[p.Key()] = di.Paths, di.Dirs
	}
	return plan, nil
}

// PlanRemove computes, from the status database, what removing args
// takes away: the packages and every dependant left without an
// alternative. ovpkg then runs dpkg --remove on exactly that set, so a
// dependant this missed makes dpkg refuse (nothing removed) instead of
// apt removing something unchecked; and no package lists are read.
func (a *Apt) PlanRemove(ctx context.Context, args []string) (*Plan, error) {
	return planRemove(a, args)
}

// selfContained says whether the local packages need nothing apt would
// have to work out: every dependency is a plain name (no version, no
// alternatives needed beyond one that is met) installed in the root or
// among the local files, and none declares Conflicts or Breaks.
func (a *Apt) selfContained(local map[string]*DebInfo) bool {
	installed, err := Installed(a)
	if err != nil {
		return false
	}
	have := map[string]bool{}
	for _, p := range installed {
		if p.State == "installed" {
			have[p.Name] = true
			have[p.Key()] = true
			for _, v := range p.Provides {
				have[v] = true
			}
		}
	}
	for n := range local {
		have[n] = true
	}
	for _, di := range local {
		if di.Control.Get("Conflicts") != "" || di.Control.Get("Breaks") != "" {
			return false
		}
		if have[di.Pkg.Name] && !localOnly(local, di.Pkg.Name, installed) {
			return false // a reinstall or an upgrade: let apt decide
		}
		for _, field := range []string{"Pre-Depends", "Depends"} {
			for _, group := range strings.Split(di.Control.Get(field), ",") {
				group = strings.TrimSpace(group)
				if group == "" {
					continue
				}
				met := false
				for _, alt := range strings.Split(group, "|") {
					alt = strings.TrimSpace(alt)
					if strings.ContainsAny(alt, "([<>=") {
						return false
					}
					if have[alt] {
						met = true
					}
				}
				if !met {
					return false
				}
			}
		}
	}
	return true
}

// localOnly says whether name is known only as a local file: not
// installed (only its configuration files left, at most).
func localOnly(local map[string]*DebInfo, name string, installed []Package) bool {
	for _, p := range installed {
		if p.Name == name && p.Installed() {
			return false
		}
	}
	_, ok := local[name]
	return ok
}
