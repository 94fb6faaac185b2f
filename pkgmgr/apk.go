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
	"sort"
	"strconv"
	"strings"
)

// Apk drives apk-tools 3 (OpenWrt 25.12 and later; Alpine). apk has no
// destinations: one root is one database (lib/apk/db/installed, the
// world file etc/apk/world, repositories in etc/apk/repositories and
// etc/apk/repositories.d, trusted keys in etc/apk/keys). Like apt, it runs
// on the live root, through the overlays, so that its database and the
// files it writes land on the card (lib, etc and var must be overlaid:
// OVERLAY_DIRS' default has them).
//
// Trust is apk's own: ovpkg never passes --allow-untrusted. A package
// not signed by a key in etc/apk/keys installs only where the root's
// apk configuration (etc/apk/config or lib/apk/config: a line
// `allow-untrusted`) allows it; otherwise the plan fails with
// ErrUntrusted before anything is written.
type Apk struct {
	root string
	x    Exec
}

// NewApk returns the apk adapter for root; x runs apk.
func NewApk(root string, x Exec) *Apk { return &Apk{root: root, x: x} }

// ApkStatusPath is apk's database of installed packages, relative to the
// root.
const ApkStatusPath = "lib/apk/db/installed"

// apkBins are where apk lives: OpenWrt /usr/bin, Alpine /sbin.
var apkBins = []string{"usr/bin/apk", "sbin/apk", "bin/apk", "usr/sbin/apk"}

func apkPresent(root string) bool {
	if !exists(filepath.Join(root, ApkStatusPath)) {
		return false
	}
	for _, b := range apkBins {
		if exists(filepath.Join(root, b)) {
			return true
		}
	}
	return false
}

// ErrUntrusted is a package apk refuses because no trusted key signed it.
var ErrUntrusted = errors.New("not signed by a key in /etc/apk/keys")

func (a *Apk) Name() string        { return "apk" }
func (a *Apk) Root() string        { return a.root }
func (a *Apk) StatusPath() string  { return ApkStatusPath }
func (a *Apk) RecoverHint() string { return "ovpkg configure" }

func (a *Apk) ParseStatus(source string, r io.Reader) ([]Package, error) {
	return ParseApkInstalled(source, r)
}

// ParseApkInstalled reads apk's lib/apk/db/installed: paragraphs of
// one-letter "K:value" lines (P name, V version, A arch, I installed size
// in bytes, D dependencies and p provides space-separated, f flags, then
// F directory / R file lines), streamed.
func ParseApkInstalled(source string, r io.Reader) ([]Package, error) {
	var out []Package
	err := scanApkInstalled(source, r, func(p *Package, line string) error {
		if line == "" && p.Name != "" {
			out = append(out, *p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

// scanApkInstalled calls fn for every line of the database with the
// package being read (fields set as far as read); at the end of each
// paragraph, fn gets line "". A paragraph is complete when fn sees it.
func scanApkInstalled(source string, r io.Reader, fn func(p *Package, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var cur Package
	n, start := 0, 0
	end := func() error {
		if cur.Name == "" && start > 0 {
			return &SyntaxError{source, start, "paragraph without a P: (package name) line"}
		}
		if start > 0 {
			if cur.State == "" {
				cur.State = "installed"
			}
			if err := fn(&cur, ""); err != nil {
				return err
			}
		}
		cur, start = Package{}, 0
		return nil
	}
	for sc.Scan() {
		n++
		l := strings.TrimRight(sc.Text(), "\r")
		if l == "" {
			if err := end(); err != nil {
				return err
			}
			continue
		}
		if len(l) < 2 || l[1] != ':' {
			return &SyntaxError{source, n, fmt.Sprintf("not a K:value line: %q", clip(l, 60))}
		}
		if start == 0 {
			start = n
		}
		v := l[2:]
		switch l[0] {
		case 'P':
			cur.Name = v
		case 'V':
			cur.Version = v
		case 'A':
			cur.Arch = v
		case 'I':
			s, err := strconv.ParseInt(v, 10, 64)
			if err != nil || s < 0 {
				return &SyntaxError{source, n, fmt.Sprintf("package %s: bad installed size %q", cur.Name, v)}
			}
			cur.InstalledSize = s
		case 'D':
			cur.Depends = apkDepends(strings.Fields(v))
		case 'p':
			cur.Provides = apkProvides(strings.Fields(v))
		case 'f':
			// apk's "broken" flags: f files, s script, x xattrs (S is a
			// hash-format note, not a fault).
			switch {
			case strings.Contains(v, "s"):
				cur.State = "broken-script"
			case strings.Contains(v, "f"):
				cur.State = "broken-files"
			case strings.Contains(v, "x"):
				cur.State = "broken-xattrs"
			}
		}
		if err := fn(&cur, l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: reading line %d: %w", source, n+1, err)
	}
	return end()
}

// errFound stops a scan early.
var errFound = errors.New("found")

// Files lists pkg's files from the database (its F: directories joined
// with their R: entries), as absolute paths.
func (a *Apk) Files(pkg string) ([]string, error) {
	if err := checkPackageName(pkg); err != nil {
		return nil, err
	}
	p := filepath.Join(a.root, ApkStatusPath)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var files []string
	dir, found := "", false
	err = scanApkInstalled(p, f, func(cur *Package, l string) error {
		if cur.Name != pkg {
			return nil
		}
		switch {
		case l == "":
			found = true
			return errFound
		case strings.HasPrefix(l, "F:"):
			dir = l[2:]
		case strings.HasPrefix(l, "R:"):
			files = append(files, "/"+strings.TrimPrefix(filepath.Join(dir, l[2:]), "/"))
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s: %w (not in %s)", pkg, ErrNotInstalled, p)
	}
	return files, nil
}

// Argv builds apk command lines. ovpkg asks its own questions, so with
// Yes apk is told not to (it asks only where /etc/apk/interactive exists).
func (a *Apk) Argv(op Op, args []string, o ArgvOptions) ([]string, error) {
	if op != OpRaw {
		if err := checkNames(args); err != nil {
			return nil, err
		}
	}
	base := []string{"apk"}
	if o.Yes && op != OpRaw {
		base = append(base, "--no-interactive")
	}
	switch op {
	case OpInstall:
		if len(args) == 0 {
			return nil, errors.New("install: no packages given")
		}
		files, err := a.rootFiles(args)
		if err != nil {
			return nil, err
		}
		return append(append(base, "add"), files...), nil
	case OpRemove:
		if len(args) == 0 {
			return nil, errors.New("remove: no packages given")
		}
		return append(append(base, "del"), args...), nil
	case OpPurge:
		if len(args) == 0 {
			return nil, errors.New("purge: no packages given")
		}
		return append(append(base, "--purge", "del"), args...), nil
	case OpUpdate:
		if len(args) != 0 {
			return nil, errors.New("update takes no packages")
		}
		return append(base, "update"), nil
	case OpUpgrade:
		return append(append(base, "upgrade"), args...), nil
	case OpConfigure:
		return append(base, "fix"), nil
	case OpRaw:
		return append(base, args...), nil
	}
	return nil, fmt.Errorf("apk: unknown operation %q", op)
}

// apkActions are the actions apk names on its transaction lines.
var apkActions = []string{"Installing", "Upgrading", "Downgrading", "Replacing", "Reinstalling", "Purging",
	"Updating pinning", "[APK unavailable, skipped] Reinstalling"}

// apkChange reads the lines apk prints for each change of a transaction
// (and with --simulate): "(1/2) Installing foo (1.0-r1)", "( 3/12)
// Upgrading foo (1.0-r1 -> 1.1-r0)", "(1/1) Purging foo (1.0-r1)". The
// name may carry a repository tag ("foo@edge"). Parsed by hand, as the
// opkg lines are: the regexp package costs the binary about 100 KB of
// its 6 MB budget (docs/dependencies.md).
func apkChange(line string) (action, name, version string, ok bool) {
	_, _, rest, ok := apkStep(line)
	if !ok {
		return "", "", "", false
	}
	for _, a := range apkActions {
		if after, found := strings.CutPrefix(rest, a+" "); found {
			if name, version, ok = nameParenVersion(after); ok {
				return a, name, version, true
			}
			return "", "", "", false
		}
	}
	return "", "", "", false
}

// nameParenVersion reads "NAME (VERSION)" at the start of s: NAME has no
// white space, VERSION no closing parenthesis.
func nameParenVersion(s string) (name, version string, ok bool) {
	name, rest, found := strings.Cut(s, " (")
	if !found || name == "" || strings.ContainsAny(name, " \t") {
		return "", "", false
	}
	version, _, found = strings.Cut(rest, ")")
	if !found {
		return "", "", false
	}
	return name, version, true
}

// ApkChange is one line of apk's transaction output.
type ApkChange struct {
	Action  string // Installing, Upgrading, Purging...
	Name    string
	Old     string // version replaced, for Upgrading/Downgrading/Replacing
	Version string // version installed, or removed for Purging
}

// ParseApkChanges reads apk's transaction lines (`apk add --simulate`).
func ParseApkChanges(r io.Reader) ([]ApkChange, error) {
	var out []ApkChange
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		action, name, version, ok := apkChange(sc.Text())
		if !ok {
			continue
		}
		c := ApkChange{Action: action, Name: name, Version: version}
		if i := strings.IndexByte(c.Name, '@'); i > 0 {
			c.Name = c.Name[:i]
		}
		if o, n, ok := strings.Cut(c.Version, " -> "); ok {
			c.Old, c.Version = o, n
		}
		if strings.HasSuffix(c.Action, "Reinstalling") {
			c.Action = "Reinstalling"
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// apkError turns apk's failure into one of ours.
func apkError(err error) error {
	var ce *CommandError
	if !errors.As(err, &ce) {
		return err
	}
	out := ce.Stderr + "\n" + ce.Stdout
	msg := apkErrorLine(out)
	switch {
	case strings.Contains(out, "UNTRUSTED signature"):
		return fmt.Errorf("%s (%w: add the signer's public key there, or, to accept unsigned packages, put a line `allow-untrusted` in /etc/apk/config, apk's own switch: ovpkg never adds it)", msg, ErrUntrusted)
	case strings.Contains(out, "(no such package)") || strings.Contains(out, "unable to select package"):
		return fmt.Errorf("%s: %w", msg, ErrUnknownPackage)
	case strings.Contains(out, "file format is invalid") || strings.Contains(out, "v3 file format") || strings.Contains(out, "ADB block error"):
		return fmt.Errorf("%s: %w", msg, ErrBadArchive)
	}
	return err
}

// apkErrorLine is apk's error in one line: its ERROR: lines joined, with
// the "unable to select packages" explanation that follows.
func apkErrorLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "ERROR: "):
			parts = append(parts, strings.TrimPrefix(t, "ERROR: "))
		case len(parts) > 0 && t != "" && strings.HasPrefix(l, " ") && !strings.HasPrefix(t, "required by:"):
			parts[len(parts)-1] += " " + t
		}
	}
	if len(parts) == 0 {
		return firstErrorLine(s)
	}
	return strings.Join(parts, "; ")
}

// Plan implements Manager. Local .apk files are read in Go (paths and
// size, checked by CheckPaths before anything runs); `apk add --simulate
// ARGS` (or upgrade) is apk's own solver, its signature checks included,
// and says what the change brings in, upgrades and removes; `apk query`
// gives the sizes. Nothing is downloaded: apk streams archive packages
// into place during the job, and the runner keeps the base root
// read-only to it (RunOptions.Writable), so archive packages need no
// listing beforehand. A remove asks `apk del --simulate --rdepends`.
func (a *Apk) Plan(ctx context.Context, req Request) (*Plan, error) {
	switch req.Op {
	case OpRemove, OpPurge:
		return a.planRemove(ctx, req.Args)
	case OpInstall, OpUpgrade:
	default:
		return nil, fmt.Errorf("apk: no plan for %q", req.Op)
	}
	if err := checkNames(req.Args); err != nil {
		return nil, err
	}
	args, err := absFiles(req.Args)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Paths: map[string][]string{}, Dirs: map[string][]string{}}
	local := map[string]*ApkInfo{}
	verb := "upgrade"
	if req.Op == OpInstall {
		verb = "add"
		for _, arg := range args {
			if !isFileArg(arg) {
				continue
			}
			info, err := readApkFile(arg)
			if err != nil {
				return nil, err
			}
			local[info.Pkg.Name] = info
			plan.Archives = append(plan.Archives, arg)
		}
	}
	if args, err = a.rootFiles(args); err != nil {
		return nil, err
	}
	out, _, err := a.x(ctx, append([]string{"apk", "--no-interactive", verb, "--simulate"}, args...))
	if err != nil {
		return nil, apkError(err)
	}
	changes, err := ParseApkChanges(bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	installed, err := Installed(a)
	if err != nil {
		return nil, err
	}
	ix := NewIndex(installed)
	var names []string
	for _, c := range changes {
		switch c.Action {
		case "Purging":
			p, ok := ix.Lookup(c.Name)
			if !ok {
				p = Package{Name: c.Name, Version: c.Version}
			}
			plan.Remove = append(plan.Remove, p)
			plan.InstallSize -= p.InstalledSize
			continue
		case "Updating pinning":
			continue
		}
		if li, ok := local[c.Name]; ok && li.Pkg.Version == c.Version {
			p := li.Pkg
			p.Old = c.Old
			plan.Install = append(plan.Install, p)
			plan.Paths[p.Key()], plan.Dirs[p.Key()] = li.Paths, li.Dirs
			continue
		}
		plan.Install = append(plan.Install, Package{Name: c.Name, Version: c.Version, Old: c.Old})
		names = append(names, c.Name)
	}
	if len(names) > 0 {
		if err := a.sizes(ctx, plan, names); err != nil {
			return nil, err
		}
	}
	for _, p := range plan.Install {
		plan.InstallSize += p.InstalledSize
		if p.Old != "" {
			if o, ok := ix.Lookup(p.Name); ok {
				plan.InstallSize -= o.InstalledSize
			}
		}
	}
	return plan, nil
}

// Job implements Manager: apk add/upgrade/del as Argv builds them, after
// a Plan (apk has no gate; its planning is cheap). A remove names the
// planned packages: the named ones and their dependants.
func (a *Apk) Job(req Request, plan *Plan) (*Job, error) {
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
	argv, err := a.Argv(req.Op, args, ArgvOptions{Yes: true})
	if err != nil {
		return nil, err
	}
	return &Job{Argv: argv, Parse: apkProgress()}, nil
}

// apkStep reads the counter of apk's transaction lines, "( 3/12) ",
// and returns the rest of the line.
func apkStep(line string) (i, n int, rest string, ok bool) {
	in, found := strings.CutPrefix(line, "(")
	if !found {
		return 0, 0, "", false
	}
	in = strings.TrimLeft(in, " \t")
	counter, rest, found := strings.Cut(in, ") ")
	a, b, found2 := strings.Cut(counter, "/")
	if !found || !found2 || !digits(a) || !digits(b) {
		return 0, 0, "", false
	}
	i, _ = strconv.Atoi(a)
	n, _ = strconv.Atoi(b)
	return i, n, rest, true
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// apkProgress turns apk's "(3/12) Installing foo (1.0-r1)" lines into
// progress events.
func apkProgress() func(Stream, string) []Event {
	return func(s Stream, line string) []Event {
		if s != StreamStdout {
			return nil
		}
		i, n, rest, ok := apkStep(line)
		if !ok {
			return nil
		}
		phase := PhaseInstall
		if strings.Contains(line, ") Purging ") {
			phase = PhaseRemove
		}
		pct := -1.0
		if n > 0 {
			pct = 100 * float64(i-1) / float64(n)
		}
		return []Event{{Kind: EventProgress, Phase: phase, Percent: pct, Text: strings.TrimSpace(rest)}}
	}
}

// rootFiles makes local package file arguments absolute and, when apk
// runs chrooted into a root other than /, names them as apk sees them
// there; a file outside that root cannot be read by apk and is refused.
func (a *Apk) rootFiles(args []string) ([]string, error) {
	args, err := absFiles(args)
	if err != nil {
		return nil, err
	}
	if a.root == "" || a.root == "/" {
		return args, nil
	}
	root, err := filepath.Abs(a.root)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(args))
	for i, f := range args {
		out[i] = f
		if !isFileArg(f) {
			continue
		}
		rel, err := filepath.Rel(root, f)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return nil, fmt.Errorf("%s is outside the root %s: apk runs chrooted there and cannot read it; copy it into %s", f, root, root)
		}
		out[i] = "/" + rel
	}
	return out, nil
}

func readApkFile(path string) (*ApkInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("package file %s: %w", path, err)
	}
	defer f.Close()
	info, err := ReadApk(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrBadArchive, err)
	}
	return info, nil
}

// sizes fills in installed sizes and architectures from `apk query`
// (every version apk knows of each name; the planned one is picked), and
// the download size of the packages no local repository or cache holds.
func (a *Apk) sizes(ctx context.Context, plan *Plan, names []string) error {
	argv := append([]string{"apk", "query", "--all-matches", "--fields", "name,version,arch,installed-size,file-size,repositories"}, names...)
	out, _, err := a.x(ctx, argv)
	if err != nil {
		return apkError(err)
	}
	st, err := ParseStanzas("apk query", bytes.NewReader(out))
	if err != nil {
		return err
	}
	for _, s := range st {
		for i := range plan.Install {
			q := &plan.Install[i]
			if q.Name != s.Get("Name") || q.Version != s.Get("Version") || q.InstalledSize != 0 {
				continue
			}
			q.Arch = s.Get("Arch")
			q.InstalledSize, _ = strconv.ParseInt(s.Get("Installed-Size"), 10, 64)
			remote := true
			for _, r := range strings.Fields(s.Get("Repositories")) {
				if strings.HasPrefix(r, "/") || strings.HasPrefix(r, "file:") || r == ApkStatusPath {
					remote = false
				}
			}
			if remote {
				n, _ := strconv.ParseInt(s.Get("File-Size"), 10, 64)
				plan.DownloadSize += n
			}
		}
	}
	return nil
}

// planRemove asks apk: `apk del --simulate --rdepends ARGS` lists the
// packages named, every package that depends on them, and the
// dependencies nothing needs any more (apk removes those too). The named
// packages come first. A name that is not installed is ErrNotInstalled.
func (a *Apk) planRemove(ctx context.Context, args []string) (*Plan, error) {
	if err := checkNames(args); err != nil {
		return nil, err
	}
	installed, err := Installed(a)
	if err != nil {
		return nil, err
	}
	ix := NewIndex(installed)
	for _, n := range args {
		if p, ok := ix.Lookup(n); !ok || !p.Installed() {
			return nil, fmt.Errorf("%s: %w", n, ErrNotInstalled)
		}
	}
	out, _, err := a.x(ctx, append([]string{"apk", "--no-interactive", "del", "--simulate", "--rdepends"}, args...))
	if err != nil {
		return nil, apkError(err)
	}
	changes, err := ParseApkChanges(bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	plan := &Plan{}
	rank := map[string]int{}
	for i, n := range args {
		rank[n] = i - len(args) // named ones first, in order
	}
	for _, c := range changes {
		if c.Action != "Purging" {
			continue
		}
		p, ok := ix.Lookup(c.Name)
		if !ok {
			p = Package{Name: c.Name, Version: c.Version}
		}
		plan.Remove = append(plan.Remove, p)
	}
	sort.SliceStable(plan.Remove, func(i, j int) bool { return rank[plan.Remove[i].Name] < rank[plan.Remove[j].Name] })
	for i, n := range args {
		if i >= len(plan.Remove) || plan.Remove[i].Name != n {
			why := ""
			if _, rest, ok := strings.Cut(string(out), "not removed due to:"); ok {
				why = ": " + strings.Join(strings.Fields(rest), " ")
			}
			return nil, fmt.Errorf("apk would not remove %s%s", n, why)
		}
	}
	return plan, nil
}
