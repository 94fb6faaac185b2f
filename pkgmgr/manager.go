package pkgmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Op is a package-manager operation ovpkg knows how to drive.
type Op string

const (
	OpInstall   Op = "install"   // install names or local package files
	OpRemove    Op = "remove"    // remove, keeping configuration
	OpPurge     Op = "purge"     // remove with configuration
	OpUpdate    Op = "update"    // refresh the package lists
	OpUpgrade   Op = "upgrade"   // upgrade everything, or the named packages
	OpConfigure Op = "configure" // finish configuring what an interrupted run left unpacked
	OpRaw       Op = "raw"       // the package manager with the user's own arguments
)

// ArgvOptions tunes Argv.
type ArgvOptions struct {
	Yes        bool   // answer yes (apt-get -y); without it the package manager may ask
	ArchiveDir string // where downloads go (apt: Dir::Cache::Archives); "" = the manager's default
}

// Manager is one package manager working on a root directory. The root
// is seen merged (base + card) when the card is mounted: reads go through
// the overlays, and so do the package manager's writes.
//
// The package verbs (install, upgrade, remove) run through package
// pkgflow, which calls Plan once, shows the plan and asks, then runs Job
// in a transaction; see pkgflow/doc.go for the whole contract.
type Manager interface {
	// Name is the adapter's name as given to --pm ("apt", "opkg").
	Name() string
	// Root is the root directory the manager works on.
	Root() string
	// StatusPath is the status database relative to the root
	// ("var/lib/dpkg/status").
	StatusPath() string
	// ParseStatus parses a status database in this manager's format.
	ParseStatus(source string, r io.Reader) ([]Package, error)
	// Files lists the paths pkg installed, from the root's database.
	Files(pkg string) ([]string, error)
	// Argv is the command line for the verbs that run without a plan
	// (update, configure, pm) and for op with args in general.
	Argv(op Op, args []string, o ArgvOptions) ([]string, error)
	// Plan works out what req would do, changing and downloading
	// nothing: one resolver run (none for a remove: the status database
	// says). Unknown packages are ErrUnknownPackage, corrupt local files
	// ErrBadArchive.
	Plan(ctx context.Context, req Request) (*Plan, error)
	// Job is the one package-manager run that carries req out,
	// downloading into req.ArchiveDir what it needs. plan is what Plan
	// returned, or nil when the flow skipped Plan (-y: no question to
	// ask); then a Job without a Gate is ErrNeedPlan.
	Job(req Request, plan *Plan) (*Job, error)
	// RecoverHint is the ovpkg command that finishes what an interrupted
	// run left half-done.
	RecoverHint() string
}

// Request is one package verb as the flow hands it to a Manager.
type Request struct {
	Op         Op       // OpInstall, OpUpgrade, OpRemove or OpPurge
	Args       []string // package names, or absolute paths of local package files; none: upgrade everything
	ArchiveDir string   // where downloaded archives go: an existing directory outside every layer
}

// Plan is what an operation would do.
type Plan struct {
	Install []Package `json:"install,omitempty"` // new, upgraded or reinstalled (Version is the new one, Old the replaced one)
	Remove  []Package `json:"remove,omitempty"`
	// InstallSize is the change of installed size the manager states
	// (apt: "After this operation"; new sizes minus the replaced ones).
	// Negative when space is freed.
	InstallSize  int64 `json:"install_size"`
	DownloadSize int64 `json:"download_size"` // bytes of archives still to download into ArchiveDir
	// Paths and Dirs hold, for local package files only (read before
	// anything runs), every path in the archive ("usr/bin/x"), so that
	// CheckPaths can refuse them early. Archive packages are not listed
	// (that costs a full decompression): the runner keeps the base root
	// read-only instead (RunOptions.Writable).
	Paths    map[string][]string `json:"-"`
	Dirs     map[string][]string `json:"-"`
	Archives []string            `json:"archives,omitempty"` // archive file names (apt's own), local files as given
	// Notes are what the user should know about how the change will be
	// made (opkg: a `dest` naming the card is left out), shown with the
	// plan.
	Notes []string `json:"notes,omitempty"`
	// NativeArch is the architecture the manager leaves unqualified in
	// its own listing (apt: "sl", not "sl:amd64"), when the plan shows
	// it; Show drops it from names as apt does.
	NativeArch string `json:"-"`

	direct bool // apt: local files dpkg installs by itself (selfContained)
}

// Show is how the plan names p: its Key, without the architecture when
// that is the native one (as apt and dpkg print it).
func (p *Plan) Show(pkg Package) string {
	if p != nil && p.NativeArch != "" && pkg.Arch == p.NativeArch {
		return pkg.Name
	}
	return pkg.Key()
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return p == nil || len(p.Install) == 0 && len(p.Remove) == 0 }

// Job is one package-manager run as the flow runs it (Run with the
// job's fields in RunOptions).
type Job struct {
	Argv []string
	Env  []string // extra environment
	// StatusFD: the manager writes machine-readable status lines to
	// file descriptor 3 (apt: APT::Status-Fd=3, dpkg: --status-fd 3);
	// Parse reads them as StreamStatus.
	StatusFD bool
	// Parse reads one line of the run's output and says what it means
	// (nil: nothing). It keeps state between lines; a Job runs once.
	Parse func(s Stream, line string) []Event
	// Gate, when set, is where the manager stops before it changes
	// anything, after downloading (it runs GateHook): Gate reads what
	// the manager hands over there and returns the plan it is about to
	// carry out, its archives checked (ErrArchiveMissing,
	// ErrBadArchive). The flow checks that plan (space, the question's
	// answer) and lets the manager go on or stops it. A Job with a Gate
	// can run without a prior Plan.
	Gate func(ctx context.Context, input []string) (*Plan, error)
}

// ErrNeedPlan is what Job(req, nil) returns when the adapter cannot run
// req without its Plan (a remove, local package files, a manager without
// a gate): the flow then calls Plan first.
var ErrNeedPlan = errors.New("the job needs its plan")

// Stream is where a line of the package manager's output came from.
type Stream int

const (
	StreamStdout Stream = iota
	StreamStderr
	StreamStatus // the status descriptor (Job.StatusFD)
)

// EventKind says what an Event reports.
type EventKind int

const (
	// EventProgress: Phase (PhaseDownload, PhaseInstall, PhaseRemove)
	// is at Percent (negative: unknown); Text says what it is doing.
	EventProgress EventKind = iota + 1
)

// Phases of a run, as progress reports them.
const (
	PhaseDownload = "downloading"
	PhaseInstall  = "installing"
	PhaseRemove   = "removing"
)

// Event is something the package manager's output says.
type Event struct {
	Kind    EventKind
	Phase   string
	Percent float64 // 0-100; negative when unknown
	Text    string
}

// Exec runs a helper command (dpkg-deb, apt-get -s, apt-cache) to
// completion and returns its output. Tests inject canned output.
type Exec func(ctx context.Context, argv []string) (stdout, stderr []byte, err error)

// HostExec runs argv on the host; with a root other than "/" it runs
// chrooted into it.
func HostExec(root string) Exec {
	return func(ctx context.Context, argv []string) ([]byte, []byte, error) {
		name := argv[0]
		chroot := root != "" && root != "/"
		if chroot && !strings.Contains(name, "/") {
			// Found in the root, not on the host's PATH.
			p, err := lookPathIn(root, name)
			if err != nil {
				return nil, nil, &CommandError{Argv: argv, Code: -1, Err: fmt.Errorf("not found in %s: %w", root, err)}
			}
			name = p
		}
		cmd := exec.CommandContext(ctx, name, argv[1:]...)
		if chroot {
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
			cmd.Dir = "/"
		}
		cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = &CommandError{Argv: argv, Code: ee.ExitCode(), Stderr: se.String(), Stdout: so.String()}
			} else {
				err = &CommandError{Argv: argv, Code: -1, Err: err}
			}
		}
		return so.Bytes(), se.Bytes(), err
	}
}

// CommandError is a helper or package-manager command that failed.
type CommandError struct {
	Argv           []string
	Code           int // exit code; -1 when it could not start
	Stdout, Stderr string
	Err            error
}

func (e *CommandError) Error() string {
	s := strings.Join(e.Argv, " ")
	if e.Err != nil {
		return s + ": " + e.Err.Error()
	}
	msg := firstErrorLine(e.Stderr + "\n" + e.Stdout)
	if msg == "" {
		return fmt.Sprintf("%s: exit status %d", s, e.Code)
	}
	return fmt.Sprintf("%s: exit status %d: %s", s, e.Code, msg)
}

func (e *CommandError) Unwrap() error { return e.Err }

// firstErrorLine picks the most telling line of a tool's output: apt's
// "E: ...", dpkg's "dpkg-deb: error: ...", else the first non-empty line.
func firstErrorLine(s string) string {
	var first string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if isErrorLine(l) {
			return l
		}
		if first == "" {
			first = l
		}
	}
	return first
}

// isErrorLine: apt's "E: ...", dpkg's "dpkg-deb: error: ...", opkg's
// " * opkg_...", apk's "ERROR: ...".
func isErrorLine(l string) bool {
	l = strings.TrimSpace(l)
	return strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "ERROR: ") || strings.Contains(l, "error:") || strings.HasPrefix(l, "* opkg")
}

// LineError turns a package manager's error line into one of ours where
// it is one (ErrUnknownPackage, ErrBadArchive), else nil.
func LineError(line string) error {
	msg := strings.TrimPrefix(strings.TrimSpace(line), "E: ")
	for _, p := range []string{"Unable to locate package", "has no installation candidate", "Couldn't find any package", "was not found", "Unknown package"} {
		if strings.Contains(msg, p) {
			return fmt.Errorf("%s: %w", msg, ErrUnknownPackage)
		}
	}
	for _, p := range []string{"Invalid archive", "not a Debian format archive", "Could not read meta data", "corrupted", "not a valid package"} {
		if strings.Contains(msg, p) {
			return fmt.Errorf("%s: %w", msg, ErrBadArchive)
		}
	}
	return nil
}

// Errors callers tell apart with errors.Is.
var (
	ErrNoManager       = errors.New("no package manager found")
	ErrSeveralManagers = errors.New("several package managers found")
	ErrUnknownPackage  = errors.New("unknown package")
	ErrBadArchive      = errors.New("not a valid package file")
	ErrNotInstalled    = errors.New("package not installed")
)

// adapter describes one package manager: how to recognise it in a root
// and how to make it.
type adapter struct {
	name    string
	where   string                 // what present looks for, for messages
	present func(root string) bool // the root has this manager's binary and database
	make    func(root string, x Exec) Manager
}

var adapters = []adapter{
	{name: "apt", where: "dpkg: var/lib/dpkg/status and usr/bin/dpkg", present: aptPresent, make: func(root string, x Exec) Manager { return NewApt(root, x) }},
	{name: "opkg", where: "opkg: usr/lib/opkg/status and bin/opkg", present: opkgPresent, make: func(root string, x Exec) Manager { return NewOpkg(root, x) }},
	{name: "apk", where: "apk: lib/apk/db/installed and usr/bin/apk", present: apkPresent, make: func(root string, x Exec) Manager { return NewApk(root, x) }},
}

// Names lists the adapters --pm accepts.
func Names() []string {
	var n []string
	for _, a := range adapters {
		n = append(n, a.name)
	}
	sort.Strings(n)
	return n
}

// Detect returns the manager for root: the one named by override when it
// is set, else the one whose binary and database the root has. A root
// with none is ErrNoManager; a root with several (an OpenWrt upgraded
// from opkg to apk that kept opkg's database, a Debian with opkg
// installed) is ErrSeveralManagers: ovpkg does not guess which one owns
// the system, --pm says. x runs helper commands (nil: HostExec(root)).
func Detect(root, override string, x Exec) (Manager, error) {
	if x == nil {
		x = HostExec(root)
	}
	var found []adapter
	for _, a := range adapters {
		if override != "" && override != a.name {
			continue
		}
		if a.present(root) {
			found = append(found, a)
		} else if override != "" {
			return nil, fmt.Errorf("--pm %s: %w in %s (its program or database is missing: %s)", override, ErrNoManager, root, a.where)
		}
	}
	switch {
	case len(found) == 1:
		return found[0].make(root, x), nil
	case override != "":
		return nil, fmt.Errorf("--pm %s: unknown package manager (known: %s)", override, strings.Join(Names(), ", "))
	case len(found) > 1:
		var n []string
		for _, a := range found {
			n = append(n, a.name)
		}
		return nil, fmt.Errorf("%w in %s: %s each have their program and database there; choose the one that manages the system with --pm", ErrSeveralManagers, root, strings.Join(n, ", "))
	}
	var w []string
	for _, a := range adapters {
		w = append(w, a.where)
	}
	return nil, fmt.Errorf("%w in %s: none of %s; choose one with --pm", ErrNoManager, root, strings.Join(w, "; "))
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// IsFileArg says whether an install argument names a local package file
// rather than a package: it has a slash or a .deb/.ipk/.apk ending.
func IsFileArg(a string) bool {
	return strings.Contains(a, "/") || strings.HasSuffix(a, ".deb") || strings.HasSuffix(a, ".ipk") || strings.HasSuffix(a, ".apk")
}

func isFileArg(a string) bool { return IsFileArg(a) }

// checkPackageName refuses anything but a plain package name (Files
// builds a path from it).
func checkPackageName(pkg string) error {
	if err := checkNames([]string{pkg}); err != nil || strings.Contains(pkg, "/") {
		return fmt.Errorf("%q is not a package name", pkg)
	}
	return nil
}

// checkNames refuses arguments that would be read as options.
func checkNames(args []string) error {
	for _, a := range args {
		if a == "" || strings.HasPrefix(a, "-") {
			return fmt.Errorf("%q is not a package name or file", a)
		}
	}
	return nil
}

// absFiles makes local package file arguments absolute (apt wants a path
// with a slash; the package manager may run with another cwd).
func absFiles(args []string) ([]string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if isFileArg(a) {
			p, err := filepath.Abs(a)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
	}
	return out, nil
}

// readStatusFile parses the manager's database at path; a missing file is
// an empty database.
func readStatusFile(m Manager, path string) ([]Package, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return m.ParseStatus(path, f)
}

// Installed reads m's database through the (merged) root. For dpkg it
// applies the journal (var/lib/dpkg/updates/NNNN, written before dpkg
// folds it into status), so a package dpkg was stopped in the middle of
// shows its real state.
func Installed(m Manager) ([]Package, error) {
	pkgs, err := readStatusFile(m, filepath.Join(m.Root(), m.StatusPath()))
	if err != nil {
		return nil, err
	}
	if _, ok := m.(*Apt); ok {
		return applyJournal(m, pkgs, filepath.Join(m.Root(), "var/lib/dpkg/updates"))
	}
	return pkgs, nil
}

// applyJournal overlays dpkg's journal entries (in file-name order) on
// pkgs; an entry whose state is not-installed drops the package.
func applyJournal(m Manager, pkgs []Package, dir string) ([]Package, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return pkgs, nil // no journal
	}
	byKey := map[string]int{}
	for i, p := range pkgs {
		byKey[p.Key()] = i
	}
	var drop []string
	for _, e := range ents { // ReadDir sorts by name: 0000, 0001, ...
		if strings.Trim(e.Name(), "0123456789") != "" {
			continue // tmp.i and friends
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		st, err := ParseStanzas(f.Name(), f)
		f.Close()
		if err != nil {
			continue // a half-written entry: dpkg ignores it too
		}
		for _, s := range st {
			p, err := packageFromStanza(f.Name(), s, 1024)
			if err != nil {
				continue
			}
			if i, ok := byKey[p.Key()]; ok {
				pkgs[i] = p
			} else {
				byKey[p.Key()] = len(pkgs)
				pkgs = append(pkgs, p)
			}
			if p.State == "not-installed" {
				drop = append(drop, p.Key())
			}
		}
	}
	if len(drop) == 0 {
		sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Key() < pkgs[j].Key() })
		return pkgs, nil
	}
	out := pkgs[:0]
	for _, p := range pkgs {
		if p.State != "not-installed" {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

// ReadStatus parses m's database at path (a missing file is empty).
func ReadStatus(m Manager, path string) ([]Package, error) { return readStatusFile(m, path) }
