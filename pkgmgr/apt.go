package pkgmgr

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
		return append(append(y([]string{"apt-get", "install"}), archiveOpt(o.ArchiveDir)...), files...), nil
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
			return append(y([]string{"apt-get", "upgrade"}), archiveOpt(o.ArchiveDir)...), nil
		}
		return append(append(y([]string{"apt-get", "install", "--only-upgrade"}), archiveOpt(o.ArchiveDir)...), args...), nil
	case OpConfigure:
		return []string{"dpkg", "--configure", "-a"}, nil
	case OpRaw:
		return append(append([]string{"apt-get"}, archiveOpt(o.ArchiveDir)...), args...), nil
	}
	return nil, fmt.Errorf("apt: unknown operation %q", op)
}

// aptError turns apt-get's failure into one of ours: "Unable to locate
// package" and friends become ErrUnknownPackage.
func aptError(err error) error {
	var ce *CommandError
	if !errors.As(err, &ce) {
		return err
	}
	if e := LineError(firstErrorLine(ce.Stderr + "\n" + ce.Stdout)); e != nil {
		return e
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
	di, err := DebFields(ctx, x, path)
	if err != nil {
		return nil, err
	}
	out, _, err := x(ctx, []string{"dpkg-deb", "--contents", path})
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
	di.Paths, di.Dirs = files, dirs
	return di, nil
}

// DebFields reads a .deb's control fields only (the small control
// member, not the data); a corrupt file is ErrBadArchive. One
// `dpkg-deb --ctrl-tarfile` (dpkg-deb decompresses the member, whatever
// its compression) read here as a tar stream: half the processes of
// `dpkg-deb --field`, which extracts into a temporary directory with tar
// (the gate reads every archive of an install: 26 for supertux).
func DebFields(ctx context.Context, x Exec, path string) (*DebInfo, error) {
	out, _, err := x(ctx, []string{"dpkg-deb", "--ctrl-tarfile", path})
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && ce.Code > 0 {
			return nil, fmt.Errorf("%s: %w: %s", path, ErrBadArchive, firstErrorLine(ce.Stderr))
		}
		return nil, err
	}
	control, err := controlMember(bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrBadArchive, err)
	}
	st, err := ParseStanzas(path, bytes.NewReader(control))
	if err != nil || len(st) != 1 {
		return nil, fmt.Errorf("%s: %w: unreadable control fields", path, ErrBadArchive)
	}
	p, err := packageFromStanza(path, st[0], 1024)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrBadArchive, err)
	}
	return &DebInfo{Path: path, Pkg: p, Control: st[0]}, nil
}

// controlMember returns the control file of a control tarball.
func controlMember(r io.Reader) ([]byte, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, errors.New("no control file in the control member")
		}
		if err != nil {
			return nil, fmt.Errorf("control member: %w", err)
		}
		if strings.TrimPrefix(h.Name, "./") != "control" || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > 1<<20 {
			return nil, fmt.Errorf("control file of %d bytes", h.Size)
		}
		return io.ReadAll(tr)
	}
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
