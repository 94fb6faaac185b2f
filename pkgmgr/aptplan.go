package pkgmgr

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// apt's plan and run. Plan is one `apt-get --print-uris -V VERB ARGS`
// (resolves, downloads nothing, prints apt's own summary and the archives
// it would fetch, under apt's own file names: name_<epoch>%3a<version>_
// <arch>.deb). Job is one `apt-get VERB -y` with Dir::Cache::Archives
// pointed at the request's archive directory, APT::Status-Fd for progress
// and the gate (GateHook as a DPkg::Pre-Install-Pkgs hook, protocol
// version 3): after downloading and before dpkg runs apt hands over every
// package action with its archive file, which Job.Gate checks (present,
// valid, sizes) and turns into the plan the flow approves or refuses.

// ErrArchiveMissing is an archive the package manager named that is not
// there (ErrBadArchive is one that is there but not a valid package).
var ErrArchiveMissing = errors.New("archive file missing")

// Plan implements Manager.
func (a *Apt) Plan(ctx context.Context, req Request) (*Plan, error) {
	switch req.Op {
	case OpRemove, OpPurge:
		return planRemove(a, req.Args)
	case OpInstall, OpUpgrade:
	default:
		return nil, fmt.Errorf("apt: no plan for %q", req.Op)
	}
	if err := checkNames(req.Args); err != nil {
		return nil, err
	}
	args, err := absFiles(req.Args)
	if err != nil {
		return nil, err
	}
	local := map[string]*DebInfo{}
	var localFiles []string
	if req.Op == OpInstall {
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
			localFiles = append(localFiles, arg)
		}
	}
	if req.Op == OpInstall && len(local) == len(args) && a.selfContained(local) {
		// Local files whose dependencies are all met by name, without
		// version constraints, and that conflict with nothing: apt would
		// install exactly these, so they go to dpkg directly (Job)
		// without reading the package lists (seconds on a small device).
		plan := &Plan{Paths: map[string][]string{}, Dirs: map[string][]string{}, direct: true}
		for _, di := range local {
			plan.Install = append(plan.Install, di.Pkg)
			plan.InstallSize += di.Pkg.InstalledSize
			plan.Paths[di.Pkg.Key()], plan.Dirs[di.Pkg.Key()] = di.Paths, di.Dirs
		}
		sort.Slice(plan.Install, func(i, j int) bool { return plan.Install[i].Name < plan.Install[j].Name })
		plan.Archives = localFiles
		return plan, nil
	}
	argv := append([]string{"apt-get", "--print-uris", "-V"}, archiveOpt(req.ArchiveDir)...)
	argv = append(append(argv, aptVerb(req)...), args...)
	out, _, err := a.x(ctx, argv)
	if err != nil {
		return nil, aptError(err)
	}
	plan, err := ParseAptSummary(strings.NewReader(string(out)))
	if err != nil {
		return nil, err
	}
	plan.Paths, plan.Dirs = map[string][]string{}, map[string][]string{}
	for i, p := range plan.Install {
		if di, ok := local[p.Name]; ok && di.Pkg.Version == p.Version {
			plan.Install[i].Arch = di.Pkg.Arch
			plan.Install[i].InstalledSize = di.Pkg.InstalledSize
			plan.Paths[di.Pkg.Key()], plan.Dirs[di.Pkg.Key()] = di.Paths, di.Dirs
		}
	}
	plan.Archives = append(localFiles, plan.Archives...)
	return plan, nil
}

func archiveOpt(dir string) []string {
	if dir == "" {
		return nil
	}
	return []string{"-o", "Dir::Cache::Archives=" + strings.TrimSuffix(dir, "/") + "/"}
}

func aptVerb(req Request) []string {
	if req.Op == OpUpgrade {
		if len(req.Args) == 0 {
			return []string{"upgrade"}
		}
		return []string{"install", "--only-upgrade"}
	}
	return []string{"install"}
}

// Job implements Manager.
func (a *Apt) Job(req Request, plan *Plan) (*Job, error) {
	switch req.Op {
	case OpRemove, OpPurge:
		// dpkg, not apt-get: the set is exactly what Plan computed
		// (dependants included, checked against the base), and dpkg
		// refuses rather than widening it; it reads no package lists.
		if plan == nil {
			return nil, ErrNeedPlan
		}
		argv := []string{"dpkg", "--status-fd", "3", "--" + string(req.Op)}
		for _, p := range plan.Remove {
			argv = append(argv, p.Key())
		}
		return &Job{Argv: argv, StatusFD: true, Parse: dpkgProgress(PhaseRemove, len(plan.Remove))}, nil
	case OpInstall, OpUpgrade:
	default:
		return nil, fmt.Errorf("apt: no job for %q", req.Op)
	}
	if err := checkNames(req.Args); err != nil {
		return nil, err
	}
	args, err := absFiles(req.Args)
	if err != nil {
		return nil, err
	}
	if plan == nil {
		for _, a := range args {
			if isFileArg(a) {
				return nil, ErrNeedPlan // local files: Plan reads them
			}
		}
	}
	if plan != nil && plan.direct {
		argv := append([]string{"dpkg", "--status-fd", "3", "--install"}, plan.Archives...)
		return &Job{Argv: argv, StatusFD: true, Parse: dpkgProgress(PhaseInstall, len(plan.Install))}, nil
	}
	argv := []string{"apt-get"}
	argv = append(argv, aptVerb(req)...)
	argv = append(argv, "-y", "-V", "-o", "APT::Status-Fd=3",
		"-o", "DPkg::Pre-Install-Pkgs::="+GateHook, "-o", GateHookOptions+"::Version=3")
	argv = append(argv, archiveOpt(req.ArchiveDir)...)
	argv = append(argv, args...)
	return &Job{
		Argv:     argv,
		StatusFD: true,
		Parse:    aptProgress,
		Gate:     func(ctx context.Context, input []string) (*Plan, error) { return a.gatePlan(ctx, input) },
	}, nil
}

// aptProgress reads APT::Status-Fd lines: "dlstatus:N:PERCENT:TEXT" while
// downloading, "pmstatus:PKG:PERCENT:TEXT" while dpkg runs.
func aptProgress(s Stream, line string) []Event {
	if s != StreamStatus {
		return nil
	}
	kind, rest, ok := strings.Cut(line, ":")
	if !ok {
		return nil
	}
	phase := ""
	switch kind {
	case "dlstatus":
		phase = PhaseDownload
	case "pmstatus":
		phase = PhaseInstall
	default:
		return nil
	}
	f := strings.SplitN(rest, ":", 3)
	if len(f) != 3 {
		return nil
	}
	pct, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return nil
	}
	text := f[2]
	if phase == PhaseInstall && strings.HasPrefix(text, "Removing ") {
		phase = PhaseRemove
	}
	return []Event{{Kind: EventProgress, Phase: phase, Percent: pct, Text: text}}
}

// dpkgProgress reads dpkg --status-fd lines ("processing: unpack: PKG",
// "processing: configure: PKG", "processing: remove: PKG") and counts
// steps: an install has two per package, a removal one.
func dpkgProgress(phase string, n int) func(Stream, string) []Event {
	steps := n
	if phase == PhaseInstall {
		steps = 2 * n
	}
	done := 0
	return func(s Stream, line string) []Event {
		if s != StreamStatus || !strings.HasPrefix(line, "processing: ") {
			return nil
		}
		f := strings.SplitN(strings.TrimPrefix(line, "processing: "), ": ", 2)
		if len(f) != 2 {
			return nil
		}
		switch f[0] {
		case "unpack", "configure", "remove", "purge":
		case "trigproc":
			// man-db's trigger alone takes 25-30 s on a loaded machine
			// (seen with the real-archive corpus): say what it is.
			return []Event{{Kind: EventProgress, Phase: phase, Percent: -1, Text: "Processing triggers for " + f[1]}}
		default:
			return []Event{{Kind: EventProgress, Phase: phase, Percent: -1, Text: f[0] + " " + f[1]}}
		}
		done++
		pct := 99.0
		if steps > 0 && done < steps {
			pct = 100 * float64(done) / float64(steps)
		}
		verb := map[string]string{"unpack": "Unpacking", "configure": "Configuring", "remove": "Removing", "purge": "Purging"}[f[0]]
		return []Event{{Kind: EventProgress, Phase: phase, Percent: pct, Text: verb + " " + f[1]}}
	}
}

// gatePlan reads what apt hands the gate (protocol version 3: "VERSION 3",
// its configuration, a blank line, then one line per package action:
// "NAME OLDVER OLDARCH OLDMA DIR NEWVER NEWARCH NEWMA ACTION", where ACTION
// is the archive file, **CONFIGURE** or **REMOVE**) and checks every
// archive: a missing one is ErrArchiveMissing, one dpkg-deb cannot read
// ErrBadArchive. The plan's sizes come from the archives' Installed-Size;
// its InstallSize is their sum minus the sizes of the versions they
// replace, as the database has them.
func (a *Apt) gatePlan(ctx context.Context, input []string) (*Plan, error) {
	i := 0
	if len(input) == 0 || input[0] != "VERSION 3" {
		return nil, fmt.Errorf("apt's pre-install hook input starts with %q, not VERSION 3", first(input))
	}
	for i < len(input) && input[i] != "" {
		i++
	}
	plan := &Plan{}
	seen := map[string]bool{}
	for _, l := range input[i:] {
		f := strings.Fields(l)
		if len(f) != 9 {
			continue
		}
		old := f[1]
		if old == "-" {
			old = ""
		}
		switch action := f[8]; action {
		case "**CONFIGURE**":
		case "**REMOVE**":
			plan.Remove = append(plan.Remove, Package{Name: f[0], Version: f[1], Arch: f[2]})
		default:
			if seen[action] {
				continue
			}
			seen[action] = true
			plan.Install = append(plan.Install, Package{Name: f[0], Version: f[5], Arch: f[6], Old: old})
			plan.Archives = append(plan.Archives, action)
		}
	}
	installed, _ := Installed(a)
	ix := NewIndex(installed)
	err := parallel(len(plan.Install), func(k int) error {
		p := &plan.Install[k]
		path := plan.Archives[k]
		if _, err := os.Lstat(path); err != nil {
			return fmt.Errorf("%s %s: %w: %s", p.Name, p.Version, ErrArchiveMissing, path)
		}
		di, err := DebFields(ctx, a.x, path)
		if err != nil {
			return err
		}
		if di.Pkg.Name != p.Name || di.Pkg.Version != p.Version {
			return fmt.Errorf("%s: %w: holds %s %s, apt expected %s %s", path, ErrBadArchive, di.Pkg.Name, di.Pkg.Version, p.Name, p.Version)
		}
		p.InstalledSize = di.Pkg.InstalledSize
		p.Arch = di.Pkg.Arch
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, p := range plan.Install {
		plan.InstallSize += p.InstalledSize
		if p.Old != "" {
			if q, ok := ix.Lookup(p.Key()); ok && q.Version == p.Old {
				plan.InstallSize -= q.InstalledSize
			} else if q, ok := ix.Lookup(p.Name); ok && q.Version == p.Old {
				plan.InstallSize -= q.InstalledSize
			}
		}
	}
	for _, p := range plan.Remove {
		if q, ok := ix.Lookup(p.Key()); ok {
			plan.InstallSize -= q.InstalledSize
		} else if q, ok := ix.Lookup(p.Name); ok {
			plan.InstallSize -= q.InstalledSize
		}
	}
	return plan, nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// parallel runs fn(0..n-1) on as many goroutines as there are CPUs and
// returns the first error (by index).
func parallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < runtime.NumCPU() && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				errs[i] = fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ParseAptSummary reads what `apt-get --print-uris -V` prints (LC_ALL=C):
// the summary ("The following NEW packages will be installed:", "...
// upgraded:", "... REMOVED:", "... DOWNGRADED:", each with "name
// (version)" or "name (old => new)" lines), "Need to get X of archives",
// "After this operation, X of additional disk space will be used" (or
// "freed"), and one line per archive to download: 'URI' FILE SIZE HASH.
// DownloadSize is the sum of those sizes (apt's rounded figure when there
// is none); InstallSize is apt's figure, rounded up.
func ParseAptSummary(r io.Reader) (*Plan, error) {
	plan := &Plan{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	section := ""
	var uriBytes int64
	uris := 0
	need := int64(-1)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "'"):
			section = ""
			// 'URI' FILE SIZE HASH
			end := strings.Index(l[1:], "'")
			if end < 0 {
				continue
			}
			f := strings.Fields(l[end+2:])
			if len(f) < 2 {
				continue
			}
			size, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("apt-get --print-uris: bad size in %q", l)
			}
			uriBytes += size
			uris++
			plan.Archives = append(plan.Archives, f[0])
		case strings.HasPrefix(l, "   ") || strings.HasPrefix(l, "  "):
			if section == "" {
				continue
			}
			name, rest, _ := strings.Cut(strings.TrimSpace(l), " ")
			name = strings.TrimSuffix(name, "*")
			vers := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(rest), "("), ")")
			old, ver, arrow := strings.Cut(vers, " => ")
			if !arrow {
				old, ver = "", vers
			}
			n, arch, _ := strings.Cut(name, ":")
			p := Package{Name: n, Arch: arch, Version: ver, Old: old}
			if section == "remove" {
				p.Version, p.Old = ver, ""
				plan.Remove = append(plan.Remove, p)
			} else {
				plan.Install = append(plan.Install, p)
			}
		case strings.HasPrefix(l, "The following NEW packages"), strings.HasPrefix(l, "The following packages will be upgraded"),
			strings.HasPrefix(l, "The following packages will be DOWNGRADED"):
			section = "install"
		case strings.HasPrefix(l, "The following packages will be REMOVED"):
			section = "remove"
		case strings.HasPrefix(l, "Need to get "):
			section = ""
			v := strings.TrimSuffix(strings.TrimPrefix(l, "Need to get "), " of archives.")
			v, _, _ = strings.Cut(v, "/")
			n, err := parseAptSize(v)
			if err != nil {
				return nil, fmt.Errorf("apt-get: %q: %w", l, err)
			}
			need = n
		case strings.HasPrefix(l, "After this operation, "):
			section = ""
			v := strings.TrimPrefix(l, "After this operation, ")
			freed := strings.HasSuffix(v, " disk space will be freed.")
			v = strings.TrimSuffix(strings.TrimSuffix(v, " of additional disk space will be used."), " disk space will be freed.")
			n, err := parseAptSize(v)
			if err != nil {
				return nil, fmt.Errorf("apt-get: %q: %w", l, err)
			}
			if freed {
				n = -n
			}
			plan.InstallSize = n
		default:
			section = ""
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	plan.DownloadSize = uriBytes
	if uris == 0 && need > 0 {
		plan.DownloadSize = need
	}
	// Architectures from apt's file names (name_version_arch.deb).
	for i := range plan.Install {
		p := &plan.Install[i]
		if p.Arch != "" {
			continue
		}
		prefix := p.Name + "_" + aptQuote(p.Version) + "_"
		for _, f := range plan.Archives {
			if strings.HasPrefix(f, prefix) && strings.HasSuffix(f, ".deb") {
				p.Arch = strings.TrimSuffix(strings.TrimPrefix(f, prefix), ".deb")
				if p.Arch != "all" {
					plan.NativeArch = p.Arch // apt printed no ":arch": the native one
				}
			}
		}
	}
	return plan, nil
}

// aptQuote is apt's QuoteString(s, "_:") as its archive file names use it
// ("1:2.0" -> "1%3a2.0").
func aptQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == ':' || c == '%' || c <= 0x20 || c >= 0x7f {
			fmt.Fprintf(&b, "%%%02x", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ArchiveName is the file name apt gives an archive in its cache:
// name_<version, epoch colon as %3a>_<arch>.deb.
func ArchiveName(name, version, arch string) string {
	return aptQuote(name) + "_" + aptQuote(version) + "_" + aptQuote(arch) + ".deb"
}

// parseAptSize reads apt's SizeToStr ("13.2 kB", "301 MB", "0 B": SI
// units) and rounds up by one unit of the last digit shown.
func parseAptSize(s string) (int64, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return 0, fmt.Errorf("size %q", s)
	}
	mult := map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size unit %q", unit)
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(num, ",", ""), 64)
	if err != nil {
		return 0, fmt.Errorf("size %q", s)
	}
	if v == 0 {
		return 0, nil
	}
	step := 1.0
	if i := strings.IndexByte(num, '.'); i >= 0 {
		for range len(num) - i - 1 {
			step /= 10
		}
	}
	return int64(math.Round((v + step) * mult)), nil
}
