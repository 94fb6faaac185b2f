package pkgmgr

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Opkg drives opkg (OpenWrt, Yocto). opkg is not packaged for Debian, so
// this adapter is tested on the command lines it builds and the files it
// reads (docs/pkgmgr.md).
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

func (o *Opkg) ParseStatus(source string, r io.Reader) ([]Package, error) {
	return ParseOpkgStatus(source, r)
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

// Argv builds opkg command lines. opkg runs with its default destination
// (root): its writes go through the live overlays onto the card, like
// dpkg's. --force-space because opkg would otherwise measure the free
// space of the base (flash) instead of the card; ovpkg checks the card.
func (o *Opkg) Argv(op Op, args []string, ao ArgvOptions) ([]string, error) {
	if op != OpRaw {
		if err := checkNames(args); err != nil {
			return nil, err
		}
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
		return append([]string{"opkg", "--force-space", "install"}, files...), nil
	case OpRemove:
		if len(args) == 0 {
			return nil, errors.New("remove: no packages given")
		}
		return append([]string{"opkg", "remove"}, args...), nil
	case OpPurge:
		if len(args) == 0 {
			return nil, errors.New("purge: no packages given")
		}
		return append([]string{"opkg", "remove", "--force-remove"}, args...), nil
	case OpUpdate:
		if len(args) != 0 {
			return nil, errors.New("update takes no packages")
		}
		return []string{"opkg", "update"}, nil
	case OpUpgrade:
		return append([]string{"opkg", "--force-space", "upgrade"}, args...), nil
	case OpConfigure:
		return []string{"opkg", "configure"}, nil
	case OpRaw:
		return append([]string{"opkg"}, args...), nil
	}
	return nil, fmt.Errorf("opkg: unknown operation %q", op)
}

// opkgInstalling matches `opkg --noaction install` lines:
// "Installing foo (1.2-3) to root...".
var opkgInstalling = regexp.MustCompile(`^Installing (\S+) \(([^)]*)\) to `)

// opkgUpgrading matches `opkg --noaction upgrade` lines:
// "Upgrading foo on root from 1.0-1 to 1.1-1...".
var opkgUpgrading = regexp.MustCompile(`^Upgrading (\S+) on \S+ from \S+ to ([^.\s]+(?:\.[^.\s]+)*)\.\.\.`)

// Plan implements Manager: local .ipk files are read in pure Go (paths,
// Installed-Size), archive packages resolved with `opkg --noaction VERB`
// and sized with `opkg info`; a remove comes from the status file.
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
	return o.planNoaction(ctx, plan, local, string(req.Op), args)
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
	argv, err := o.Argv(req.Op, args, ArgvOptions{Yes: true})
	if err != nil {
		return nil, err
	}
	return &Job{Argv: argv}, nil
}

func (o *Opkg) planNoaction(ctx context.Context, plan *Plan, local map[string]bool, verb string, args []string) (*Plan, error) {
	out, _, err := o.x(ctx, append([]string{"opkg", "--noaction", verb}, args...))
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && strings.Contains(ce.Stdout+ce.Stderr, "Unknown package") {
			return nil, fmt.Errorf("%s: %w", firstErrorLine(ce.Stderr+"\n"+ce.Stdout), ErrUnknownPackage)
		}
		return nil, err
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := opkgInstalling.FindStringSubmatch(sc.Text())
		if m == nil {
			m = opkgUpgrading.FindStringSubmatch(sc.Text())
		}
		if m == nil || local[m[1]] {
			continue
		}
		plan.Install = append(plan.Install, Package{Name: m[1], Version: m[2]})
		names = append(names, m[1])
	}
	if len(names) > 0 {
		out, _, err := o.x(ctx, append([]string{"opkg", "info"}, names...))
		if err != nil {
			return nil, err
		}
		st, err := ParseStanzas("opkg info", bytes.NewReader(out))
		if err != nil {
			return nil, err
		}
		for _, s := range st {
			p, err := packageFromStanza("opkg info", s, 1)
			if err != nil {
				return nil, err
			}
			for i := range plan.Install {
				if plan.Install[i].Name == p.Name && plan.Install[i].Version == p.Version {
					plan.Install[i].InstalledSize = p.InstalledSize
					plan.Install[i].Arch = p.Arch
				}
			}
		}
	}
	for _, p := range plan.Install {
		plan.InstallSize += p.InstalledSize
	}
	return plan, nil
}

// IpkInfo is what an .ipk holds.
type IpkInfo struct {
	Pkg   Package
	Paths []string
	Dirs  []string
}

// ReadIpk reads an OpenWrt/opkg package: a gzipped tar (or, for older
// packages, an ar archive) holding control.tar.gz and data.tar.gz. Pure
// Go: no opkg needed to check a local package before installing it.
func ReadIpk(r io.Reader) (*IpkInfo, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<30))
	if err != nil {
		return nil, err
	}
	var members map[string][]byte
	if bytes.HasPrefix(data, []byte("!<arch>\n")) {
		members, err = readAr(data)
	} else {
		members, err = readTarGz(bytes.NewReader(data), true)
	}
	if err != nil {
		return nil, err
	}
	ctl, ok := members["control.tar.gz"]
	if !ok {
		return nil, errors.New("no control.tar.gz inside")
	}
	dat, ok := members["data.tar.gz"]
	if !ok {
		return nil, errors.New("no data.tar.gz inside")
	}
	cm, err := readTarGz(bytes.NewReader(ctl), true)
	if err != nil {
		return nil, fmt.Errorf("control.tar.gz: %w", err)
	}
	control, ok := cm["control"]
	if !ok {
		return nil, errors.New("control.tar.gz has no control file")
	}
	st, err := ParseStanzas("control", bytes.NewReader(control))
	if err != nil || len(st) != 1 {
		return nil, fmt.Errorf("control file unreadable (%v)", err)
	}
	p, err := packageFromStanza("control", st[0], 1)
	if err != nil {
		return nil, err
	}
	info := &IpkInfo{Pkg: p}
	zr, err := gzip.NewReader(bytes.NewReader(dat))
	if err != nil {
		return nil, fmt.Errorf("data.tar.gz: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("data.tar.gz: %w", err)
		}
		name := strings.Trim(strings.TrimPrefix(h.Name, "."), "/")
		if name == "" {
			continue
		}
		if h.Typeflag == tar.TypeDir {
			info.Dirs = append(info.Dirs, name)
		} else {
			info.Paths = append(info.Paths, name)
		}
	}
	return info, nil
}

func readTarGz(r io.Reader, keep bool) (map[string][]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg || !keep {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 1<<30))
		if err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(h.Name, "./")] = b
	}
}

func readAr(data []byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	p := data[8:]
	for len(p) >= 60 {
		hdr := p[:60]
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[:16])), "/")
		var size int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(hdr[48:58])), "%d", &size); err != nil || size < 0 || 60+size > len(p) {
			return nil, errors.New("corrupt ar header")
		}
		out[name] = p[60 : 60+size]
		p = p[60+size:]
		if size%2 == 1 && len(p) > 0 {
			p = p[1:]
		}
	}
	return out, nil
}
