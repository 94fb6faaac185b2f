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
	"strings"
)

// Opkg drives opkg (OpenWrt, Yocto). It is tested against the real
// opkg-lede built from ../shared/pm-src in a busybox root
// (internal/owrttest, app/openwrt_e2e_test.go) and on canned output
// (docs/pkgmgr.md).
type Opkg struct {
	root     string
	stateDir string // usr/lib/opkg (OpenWrt) or var/lib/opkg (older, Yocto)
	x        Exec
}

var opkgStateDirs = []string{"usr/lib/opkg", "var/lib/opkg"}

// NewOpkg returns the opkg adapter for root; x runs opkg.
func NewOpkg(root string, x Exec) *Opkg {
	o := &Opkg{root: root, stateDir: opkgStateDirs[0], x: x}
	for _, d := range opkgStateDirs {
		if exists(filepath.Join(root, d, "status")) {
			o.stateDir = d
			break
		}
	}
	return o
}

func opkgPresent(root string) bool {
	bin := exists(filepath.Join(root, "bin/opkg")) || exists(filepath.Join(root, "usr/bin/opkg"))
	if !bin {
		return false
	}
	for _, d := range opkgStateDirs {
		if exists(filepath.Join(root, d, "status")) {
			return true
		}
	}
	return false
}

func (o *Opkg) Name() string        { return "opkg" }
func (o *Opkg) Root() string        { return o.root }
func (o *Opkg) StatusPath() string  { return o.stateDir + "/status" }
func (o *Opkg) RecoverHint() string { return "ovpkg configure" }

// ParseStatus reads an opkg status file. opkg-lede writes no
// Installed-Size there, so a package without one gets the sum of the
// sizes of the files its info/NAME.list names, as they are in the root.
func (o *Opkg) ParseStatus(source string, r io.Reader) ([]Package, error) {
	pkgs, err := ParseOpkgStatus(source, r)
	if err != nil {
		return nil, err
	}
	for i := range pkgs {
		if pkgs[i].InstalledSize == 0 && pkgs[i].Installed() {
			pkgs[i].InstalledSize = o.listedSize(pkgs[i].Name)
		}
	}
	return pkgs, nil
}

// listedSize adds up the sizes of the regular files in info/NAME.list.
func (o *Opkg) listedSize(name string) int64 {
	files, err := o.Files(name)
	if err != nil {
		return 0
	}
	var n int64
	for _, f := range files {
		if fi, err := os.Lstat(filepath.Join(o.root, f)); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// Files reads <state dir>/info/<pkg>.list.
func (o *Opkg) Files(pkg string) ([]string, error) {
	if err := checkPackageName(pkg); err != nil {
		return nil, err
	}
	p := filepath.Join(o.root, o.stateDir, "info", pkg+".list")
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (no %s)", pkg, ErrNotInstalled, p)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readList(f)
}

// Argv builds opkg command lines. opkg runs with its root destination:
// its writes go through the live overlays onto the card, like dpkg's.
// --force-space because opkg would otherwise measure the free space of
// the base (flash) instead of the card; ovpkg checks the card. With
// ao.ArchiveDir, opkg's temporary directory (where it downloads packages
// and unpacks them: /tmp, RAM on OpenWrt) is made there (-t), on the
// card. A `dest` that points at the card itself (the seed's `dest card
// /overlay`) is left out of the configuration opkg gets (opkgPrefix).
func (o *Opkg) Argv(op Op, args []string, ao ArgvOptions) ([]string, error) {
	if op != OpRaw {
		if err := checkNames(args); err != nil {
			return nil, err
		}
	}
	pre, _, err := o.opkgPrefix()
	if err != nil {
		return nil, err
	}
	if ao.ArchiveDir != "" && op != OpRaw {
		pre = append(pre, opkgArchiveFlags(ao.ArchiveDir)...)
	}
	cmd := func(a ...string) []string { return append(append([]string{}, pre...), a...) }
	switch op {
	case OpInstall:
		if len(args) == 0 {
			return nil, errors.New("install: no packages given")
		}
		files, err := absFiles(args)
		if err != nil {
			return nil, err
		}
		return cmd(append([]string{"--force-space", "install"}, files...)...), nil
	case OpRemove:
		if len(args) == 0 {
			return nil, errors.New("remove: no packages given")
		}
		return cmd(append([]string{"remove"}, args...)...), nil
	case OpPurge:
		if len(args) == 0 {
			return nil, errors.New("purge: no packages given")
		}
		return cmd(append([]string{"remove", "--force-remove"}, args...)...), nil
	case OpUpdate:
		if len(args) != 0 {
			return nil, errors.New("update takes no packages")
		}
		return cmd("update"), nil
	case OpUpgrade:
		return cmd(append([]string{"--force-space", "upgrade"}, args...)...), nil
	case OpConfigure:
		return cmd("configure"), nil
	case OpRaw:
		return cmd(args...), nil
	}
	return nil, fmt.Errorf("opkg: unknown operation %q", op)
}

// CheckTools says what opkg needs in the root besides itself and is
// missing: opkg-lede runs an external `gzip -d -c` from PATH to read
// package lists and packages and, without it, fails silently (empty
// lists, "Unknown package"); and it takes its lock in /var/lock, which it
// does not create ("Could not create lock file", exit 255).
func (o *Opkg) CheckTools() error {
	if _, err := lookPathIn(o.root, "gzip"); err != nil {
		return fmt.Errorf("opkg needs gzip on PATH in %s to read package lists and packages, and there is none (opkg would fail silently: empty lists, \"Unknown package\"); install busybox's gzip applet or the gzip package", o.root)
	}
	if fi, err := os.Stat(filepath.Join(o.root, "var/lock")); err != nil || !fi.IsDir() {
		return fmt.Errorf("opkg needs the directory %s for its lock, and it is missing (OpenWrt's boot creates it in /tmp); create it: mkdir -p /var/lock", filepath.Join(o.root, "var/lock"))
	}
	return nil
}

// opkgInstalling reads `opkg --noaction install` lines:
// "Installing foo (1.2-3) to root...".
func opkgInstalling(line string) (name, version string, ok bool) {
	rest, found := strings.CutPrefix(line, "Installing ")
	if !found {
		return "", "", false
	}
	name, version, ok = nameParenVersion(rest)
	if !ok || !strings.HasPrefix(rest[len(name)+2+len(version):], ") to ") {
		return "", "", false
	}
	return name, version, true
}

// opkgUpgrading reads `opkg --noaction upgrade` lines:
// "Upgrading foo on root from 1.0-1 to 1.1-1...".
func opkgUpgrading(line string) (name, old, version string, ok bool) {
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "Upgrading" || f[2] != "on" || f[4] != "from" || f[6] != "to" {
		return "", "", "", false
	}
	v, _, found := strings.Cut(f[7], "...")
	if !found || v == "" || strings.HasSuffix(v, ".") || strings.Contains(v, "..") {
		return "", "", "", false
	}
	return f[1], f[5], v, true
}

// Plan implements Manager: local .ipk files are read in pure Go (paths,
// Installed-Size), archive packages resolved with `opkg --noaction VERB`
// and sized from the package lists; a remove comes from the status file.
// Nothing is downloaded: the package manager's run keeps the base root
// read-only (RunOptions.Writable), so an archive package's paths need no
// listing beforehand.
func (o *Opkg) Plan(ctx context.Context, req Request) (*Plan, error) {
	switch req.Op {
	case OpRemove, OpPurge:
		return planRemove(o, req.Args)
	case OpInstall, OpUpgrade:
	default:
		return nil, fmt.Errorf("opkg: no plan for %q", req.Op)
	}
	if err := checkNames(req.Args); err != nil {
		return nil, err
	}
	args, err := absFiles(req.Args)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Paths: map[string][]string{}, Dirs: map[string][]string{}}
	local := map[string]bool{}
	for _, a := range args {
		if req.Op != OpInstall || !isFileArg(a) {
			continue
		}
		f, err := os.Open(a)
		if err != nil {
			return nil, fmt.Errorf("package file %s: %w", a, err)
		}
		info, err := ReadIpk(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", a, ErrBadArchive, err)
		}
		local[info.Pkg.Name] = true
		plan.Install = append(plan.Install, info.Pkg)
		plan.Paths[info.Pkg.Key()], plan.Dirs[info.Pkg.Key()] = info.Paths, info.Dirs
		plan.Archives = append(plan.Archives, a)
	}
	return o.planNoaction(ctx, plan, local, string(req.Op), args, req.ArchiveDir)
}

// Job implements Manager: opkg install/upgrade/remove as Argv builds it,
// after a Plan (opkg has no gate; its planning is cheap).
func (o *Opkg) Job(req Request, plan *Plan) (*Job, error) {
	if plan == nil {
		return nil, ErrNeedPlan
	}
	args := req.Args
	if req.Op == OpRemove || req.Op == OpPurge {
		args = nil
		for _, p := range plan.Remove {
			args = append(args, p.Name)
		}
	}
	argv, err := o.Argv(req.Op, args, ArgvOptions{Yes: true, ArchiveDir: req.ArchiveDir})
	if err != nil {
		return nil, err
	}
	return &Job{Argv: argv}, nil
}

// opkgArchiveFlags puts opkg's temporary directory (-t: where it
// downloads and unpacks) and its package cache (--cache) in the archive
// directory. `opkg --noaction install`, the plan, downloads the whole
// closure (it checks sizes, checksums and file clashes); with the cache
// the job that follows finds each package there, checks its checksum
// against the package list and copies it instead of downloading it again
// (opkg-lede bypasses its cache for file:// feeds, which it copies
// anyway). The cached files are the verb's downloads: deleted after it
// unless KEEP_ARCHIVES=yes.
func opkgArchiveFlags(dir string) []string {
	return []string{"-t", dir, "--cache", dir}
}

// planNoaction runs `opkg --noaction VERB ARGS` for the closure. opkg
// downloads every package of it even then: into archiveDir (-t, --cache),
// on the card, not into /tmp (RAM on OpenWrt).
func (o *Opkg) planNoaction(ctx context.Context, plan *Plan, local map[string]bool, verb string, args []string, archiveDir string) (*Plan, error) {
	if err := o.CheckTools(); err != nil {
		return nil, err
	}
	pre, note, err := o.opkgPrefix()
	if err != nil {
		return nil, err
	}
	if note != "" {
		plan.Notes = append(plan.Notes, note)
	}
	if archiveDir != "" {
		pre = append(pre, opkgArchiveFlags(archiveDir)...)
	}
	out, _, err := o.x(ctx, append(append(append([]string{}, pre...), "--noaction", verb), args...))
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && strings.Contains(ce.Stdout+ce.Stderr, "Unknown package") {
			return nil, fmt.Errorf("%s: %w", firstErrorLine(ce.Stderr+"\n"+ce.Stdout), ErrUnknownPackage)
		}
		return nil, err
	}
	wanted := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, version, ok := opkgInstalling(sc.Text())
		old := ""
		if !ok {
			name, old, version, ok = opkgUpgrading(sc.Text())
		}
		if !ok || local[name] {
			continue
		}
		plan.Install = append(plan.Install, Package{Name: name, Version: version, Old: old})
		wanted[name] = true
	}
	// Sizes come from the package lists (Installed-Size, Size): opkg
	// info prints neither, and opkg-lede keeps no Installed-Size in its
	// status file.
	if len(wanted) > 0 {
		conf, err := ReadOpkgConf(o.root)
		if err != nil {
			return nil, err
		}
		lists := readOpkgLists(filepath.Join(o.root, conf.ListsDir), wanted)
		for i := range plan.Install {
			for _, fi := range lists[plan.Install[i].Name] {
				if fi.Version == plan.Install[i].Version {
					plan.Install[i].InstalledSize, plan.Install[i].Arch = fi.InstalledSize, fi.Arch
					plan.DownloadSize += fi.Size
					break
				}
			}
		}
	}
	// InstallSize is the change: an upgrade frees the old version's size.
	installed, _ := Installed(o)
	ix := NewIndex(installed)
	for _, p := range plan.Install {
		plan.InstallSize += p.InstalledSize
		if p.Old != "" {
			if q, ok := ix.Lookup(p.Name); ok {
				plan.InstallSize -= q.InstalledSize
			}
		}
	}
	return plan, nil
}
