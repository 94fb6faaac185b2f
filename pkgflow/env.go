package pkgflow

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/internal/atomicfile"
	"github.com/ovpkg/ovpkg/internal/progress"
	"github.com/ovpkg/ovpkg/internal/selfexec"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/overlay"
	"github.com/ovpkg/ovpkg/pkgmgr"
	"github.com/ovpkg/ovpkg/txn"
)

// Options are what a package verb is told by its command line.
type Options struct {
	Mount mountset.Options // --config, --root; Out is ignored (Progress is used)
	PM    string           // --pm: the adapter to use ("" = detect)
	Yes   bool             // -y: ask nothing
	Force bool             // remove: base packages too
	// NoSpaceCheck skips the free-space check (tests inject ENOSPC).
	NoSpaceCheck bool
	// In answers the question (nil: os.Stdin); InTerminal says whether a
	// person can answer (nil: In is os.Stdin and a terminal).
	In         io.Reader
	InTerminal *bool
	// Progress prints ovpkg's own lines and bar (stderr); Stdout and
	// Stderr receive the package manager's own output.
	Progress       *progress.Printer
	Stdout, Stderr io.Writer
}

func (o *Options) in() io.Reader {
	if o.In == nil {
		return os.Stdin
	}
	return o.In
}

func (o *Options) inTerminal() bool {
	if o.InTerminal != nil {
		return *o.InTerminal
	}
	if f, ok := o.in().(*os.File); ok {
		return progress.IsTerminal(f)
	}
	return false
}

// Env is an open package environment: the package manager of the root
// and, for a change, the ovpkg lock and the card mounted.
type Env struct {
	Opt  Options
	Root string
	Rec  *mountset.Record // nil when no card is mounted (read-only use)
	M    pkgmgr.Manager

	mountOpt mountset.Options
	mounted  bool // this verb mounted the card
	unlock   func()
	p        *progress.Printer
}

// Close releases the lock.
func (e *Env) Close() {
	if e.unlock != nil {
		e.unlock()
		e.unlock = nil
	}
}

func (e *Env) say(format string, a ...any) { e.p.Say(format, a...) }

// Open finds the package manager and, with change set, takes the ovpkg
// lock and mounts the card as ovmount does (the undo list gets the
// eject); without it, it only reads the current mount record (Rec nil
// when nothing is mounted).
func Open(opt Options, change bool) (*Env, error) {
	return open(opt, change, nil)
}

func open(opt Options, change bool, undo *undoList) (*Env, error) {
	if opt.Progress == nil {
		opt.Progress = progress.NewPlain(io.Discard, "")
	}
	e := &Env{Opt: opt, Root: filepath.Clean(opt.Mount.Root), p: opt.Progress}
	if e.Root == "" || e.Root == "." {
		e.Root = "/"
	}
	e.mountOpt = opt.Mount
	e.mountOpt.Out = opt.Progress
	m, err := pkgmgr.Detect(e.Root, opt.PM, nil)
	if err != nil {
		return nil, err
	}
	e.M = m
	if !change {
		e.Rec, err = mountset.Current(e.mountOpt)
		if errors.Is(err, mountset.ErrNotMounted) {
			return e, nil
		}
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	// Leave the overlays first (re-executing from memory when this
	// binary lives on one, and moving to /): the transaction restacks
	// them, which anything of ours still on them would block.
	if err := txn.LeaveMounts(e.mountOpt); err != nil {
		return nil, err
	}
	if e.unlock, err = mountset.Lock(e.mountOpt); err != nil {
		return nil, err
	}
	// A card that is fully mounted is used as it is, silently; anything
	// else (not mounted, card only, half stacked) goes through Up, which
	// says what it does.
	if cur, cerr := mountset.Current(e.mountOpt); cerr == nil && cur.State == mountset.StateMounted {
		e.Rec = cur
	} else {
		if e.Rec, err = mountset.Up(e.mountOpt); err != nil {
			e.Close()
			return nil, err
		}
		if !e.Rec.AlreadyMounted && undo != nil {
			e.mounted = true
			undo.push("mounting the card", func() error {
				_, err := mountset.Eject(mountset.Options{ConfigPath: e.mountOpt.ConfigPath, Root: e.mountOpt.Root})
				return err
			})
		}
	}
	pkgmgr.RemoveStalePolicy(e.Root)
	return e, nil
}

// statusOverlay finds the overlay holding the status database: the
// overlay covering it and the path inside.
func (e *Env) statusOverlay() (*overlay.Mount, string) {
	if e.Rec == nil {
		return nil, ""
	}
	full := filepath.Join(e.Root, e.M.StatusPath())
	for i := range e.Rec.Overlays {
		o := &e.Rec.Overlays[i]
		if rel, err := filepath.Rel(o.Target, full); err == nil && !strings.HasPrefix(rel, "..") {
			return o, rel
		}
	}
	return nil, ""
}

// DBs is the package database three ways.
type DBs struct {
	Merged      []pkgmgr.Package // what the system sees
	Base        []pkgmgr.Package // the base root's own database
	BaseRaw     []byte
	CardHasCopy bool // the card holds a copy of the database
	Snapshot    []pkgmgr.Package
	SnapHash    string // sha256 of the base database when ovpkg last wrote the card
}

// BaseChanged says whether the base database changed since ovpkg last
// wrote the card (nil: unknown).
func (d *DBs) BaseChanged() *bool {
	if d.SnapHash == "" || d.BaseRaw == nil {
		return nil
	}
	s := sha256.Sum256(d.BaseRaw)
	changed := d.SnapHash != hex.EncodeToString(s[:])
	return &changed
}

// ReadDBs reads the merged, base and card views of the database.
func (e *Env) ReadDBs() (*DBs, error) {
	d := &DBs{}
	var err error
	d.Merged, err = pkgmgr.Installed(e.M)
	if err != nil {
		return nil, err
	}
	o, rel := e.statusOverlay()
	if o == nil { // not mounted, or the database is not under an overlay
		d.Base = d.Merged
		d.BaseRaw, _ = os.ReadFile(filepath.Join(e.Root, e.M.StatusPath()))
		return d, nil
	}
	// The card's layers: the upper dir, then every lower but the last
	// (the base directory itself).
	for _, l := range append([]string{o.Upper}, o.Lowers[:len(o.Lowers)-1]...) {
		if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
			d.CardHasCopy = true
			break
		}
	}
	d.BaseRaw, err = readBase(o.Lowers[len(o.Lowers)-1], o.Target, rel)
	if err != nil {
		return nil, fmt.Errorf("reading the base's package database: %w", err)
	}
	if d.BaseRaw != nil {
		d.Base, err = e.M.ParseStatus("base:"+e.M.StatusPath(), bytes.NewReader(d.BaseRaw))
		if err != nil {
			return nil, err
		}
	}
	d.SnapHash, d.Snapshot = readSnapshot(filepath.Join(e.Root, snapshotPath))
	return d, nil
}

// snapshotPath is where ovpkg notes, on the card (through the /var
// overlay), which base database the card's copy was made from.
const snapshotPath = "var/lib/ovpkg/base-status"

// ReadBaseArg is the hidden command readBase runs (ReadBaseMain).
const ReadBaseArg = "__read-base"

// readBase reads rel in the base directory lower. When lower is the
// overlay's own mount point (the usual case: /var over /var) the overlay
// hides it; then a child ovpkg, in a private mount namespace of its own,
// unmounts the overlay there (nobody else sees that) and reads the file.
// A missing file is nil, nil.
func readBase(lower, target, rel string) ([]byte, error) {
	if filepath.Clean(lower) != filepath.Clean(target) {
		b, err := os.ReadFile(filepath.Join(lower, rel))
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	cmd := exec.Command("/proc/self/exe", ReadBaseArg, target, rel)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s/%s below the overlay: %v: %s", target, rel, err, strings.TrimSpace(se.String()))
	}
	return so.Bytes(), nil
}

// ReadBaseMain is the hidden command: in the private mount namespace the
// parent asked for (CLONE_NEWNS) it unmounts the overlay(s) stacked on
// target and copies target/rel to w. Exit code 3: no such file.
// With "--exists TARGET" it reads relative paths from in and prints
// those that exist below the overlay.
func ReadBaseMain(args []string, in io.Reader, w io.Writer) (code int, err error) {
	if len(args) != 2 {
		return 2, fmt.Errorf("%s TARGET PATH | %s %s TARGET", ReadBaseArg, ReadBaseArg, existsFlag)
	}
	target, rel := args[0], args[1]
	if target == existsFlag {
		target, rel = rel, ""
	}
	for i := 0; i < 4; i++ {
		tab, err := mount.Self()
		if err != nil {
			return 1, err
		}
		m := tab.Lookup(target)
		if m == nil || m.FSType != "overlay" {
			break
		}
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			return 1, fmt.Errorf("umount %s in a private namespace: %w", target, err)
		}
	}
	if rel == "" {
		if err := existing(target, in, w); err != nil {
			return 1, err
		}
		return 0, nil
	}
	b, err := os.ReadFile(filepath.Join(target, rel))
	if errors.Is(err, os.ErrNotExist) {
		return 3, nil
	}
	if err != nil {
		return 1, err
	}
	_, err = w.Write(b)
	return 0, err
}

// writeSnapshot notes, on the card, the base database the card's copy
// was made from: its sha256 and "package version" lines.
func (e *Env) writeSnapshot(d *DBs) {
	if d == nil || d.BaseRaw == nil || e.Rec == nil {
		return
	}
	var b strings.Builder
	sum := sha256.Sum256(d.BaseRaw)
	fmt.Fprintf(&b, "sha256 %s\n", hex.EncodeToString(sum[:]))
	for _, p := range d.Base {
		if p.Installed() {
			fmt.Fprintf(&b, "%s %s\n", p.Key(), p.Version)
		}
	}
	p := filepath.Join(e.Root, snapshotPath)
	if old, err := os.ReadFile(p); err == nil && string(old) == b.String() {
		return // unchanged: not written, so not copied into a new layer
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return
	}
	// Best effort: without it status only cannot tell base changes apart.
	_ = atomicfile.Write(p, []byte(b.String()), 0o644)
}

func readSnapshot(path string) (string, []pkgmgr.Package) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil
	}
	defer f.Close()
	var hash string
	pkgs := []pkgmgr.Package{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		if k == "sha256" {
			hash = v
			continue
		}
		name, arch, _ := strings.Cut(k, ":")
		pkgs = append(pkgs, pkgmgr.Package{Name: name, Arch: arch, Version: v, State: "installed"})
	}
	return hash, pkgs
}

// Broken lists packages the package manager left half-done.
func Broken(pkgs []pkgmgr.Package) []string {
	var out []string
	for _, p := range pkgs {
		if p.Broken() {
			out = append(out, p.Key()+" ("+p.State+")")
		}
	}
	sort.Strings(out)
	return out
}

// Holders lists processes using the card or its overlays, except this
// one and the processes of its own pipeline (the other end of a pipe on
// its standard input, output or error: `ovpkg install x | tee log`),
// which exit with it.
func (e *Env) Holders() []busy.Holder {
	if e.Rec == nil {
		return nil
	}
	tab, err := mount.Self()
	if err != nil {
		return nil
	}
	var devs []uint64
	for _, o := range e.Rec.Overlays {
		if m := tab.OverlayUsingUpper(o.Upper); m != nil {
			devs = append(devs, mount.Dev(m))
		}
	}
	if m := tab.Lookup(e.Rec.CardMount); m != nil {
		devs = append(devs, mount.Dev(m))
	}
	except := append([]int{os.Getpid()}, busy.PipelinePeers("/proc", os.Getpid())...)
	h, _ := busy.ScanExcept("/proc", devs, except)
	return h
}

// ResolveArgs makes local package file arguments absolute against the
// directory ovpkg was started in (selfexec.Cwd: after a re-exec from
// memory the working directory is /).
func ResolveArgs(args []string) ([]string, error) {
	wd, err := selfexec.Cwd()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if pkgmgr.IsFileArg(a) && !filepath.IsAbs(a) {
			out[i] = filepath.Join(wd, a)
		}
	}
	return out, nil
}
