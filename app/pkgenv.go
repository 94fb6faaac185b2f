package app

import (
	"bufio"
	"bytes"
	"context"
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

	"github.com/ovpkg/ovpkg/internal/cli"
	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/internal/atomicfile"
	"github.com/ovpkg/ovpkg/internal/selfexec"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/overlay"
	"github.com/ovpkg/ovpkg/pkgmgr"
	"github.com/ovpkg/ovpkg/txn"
)

// Flags of the package verbs.
var (
	pmFlag = &cli.StringFlag{
		Name:  "pm",
		Usage: "package manager to drive: " + strings.Join(pkgmgr.Names(), ", ") + " (default: the one the root has)",
	}
	yesFlag = &cli.BoolFlag{
		Name:    "yes",
		Aliases: []string{"y"},
		Usage:   "do not ask for confirmation (apt-get -y)",
	}
	noSpaceCheckFlag = &cli.BoolFlag{
		Name:   "no-space-check",
		Usage:  "skip the free-space check (tests inject ENOSPC with it)",
		Hidden: true,
	}
)

// pkgFlags are the flags every package verb takes.
func pkgFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{configFlag, rootFlag, pmFlag}, extra...)
}

// snapshotPath is where ovpkg notes, on the card (through the /var
// overlay), which base database the card's copy was made from.
const snapshotPath = "var/lib/ovpkg/base-status"

// pkgEnv is what a package verb works with.
type pkgEnv struct {
	c       *cli.Context
	opt     mountset.Options
	root    string
	rec     *mountset.Record // nil when the card is not mounted
	mounted bool             // this command mounted the card
	m       pkgmgr.Manager
	unlock  func()
	out     io.Writer // human messages (stderr when --json)
}

func (e *pkgEnv) close() {
	if e.unlock != nil {
		e.unlock()
	}
	if os.Getenv(envReportRSS) != "" {
		reportRSS(e.c.App.ErrWriter)
	}
}

// envReportRSS makes the package verbs print ovpkg's own peak RSS
// (VmHWM: this process only, not the package manager it ran) for the
// benchmark.
const envReportRSS = "OVPKG_REPORT_RSS"

func reportRSS(w io.Writer) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			fmt.Fprintf(w, "ovpkg-vmhwm-kb: %s\n", strings.Fields(l)[1])
		}
	}
}

func (e *pkgEnv) say(format string, a ...any) { fmt.Fprintf(e.out, "ovpkg: "+format+"\n", a...) }

// pkgOptions builds mountset.Options for the package verbs (their --force
// means something else: never mount an unclean card unchecked).
func pkgOptions(c *cli.Context, out io.Writer) mountset.Options {
	return mountset.Options{ConfigPath: c.String("config"), Root: c.String("root"), Out: out}
}

// openPkgEnv finds the package manager and, with change set, takes the
// ovpkg lock and mounts the card as ovmount does; without it, it only
// reads the current mount record (nil when nothing is mounted).
func openPkgEnv(c *cli.Context, change bool) (*pkgEnv, error) {
	e := &pkgEnv{c: c, root: filepath.Clean(c.String("root")), out: c.App.ErrWriter}
	if e.root == "" || e.root == "." {
		e.root = "/"
	}
	e.opt = pkgOptions(c, e.out)
	m, err := pkgmgr.Detect(e.root, c.String("pm"), nil)
	if err != nil {
		return nil, err
	}
	e.m = m
	if change {
		// Leave the overlays first (re-executing from memory when this
		// binary lives on one, and moving to /): the transaction restacks
		// them, which anything of ours still on them would block.
		if err := txn.LeaveMounts(e.opt); err != nil {
			return nil, err
		}
		e.unlock, err = mountset.Lock(e.opt)
		if err != nil {
			return nil, err
		}
		// A card that is fully mounted is used as it is, silently; anything
		// else (not mounted, card only, half stacked) goes through Up, which
		// says what it does.
		if cur, cerr := mountset.Current(e.opt); cerr == nil && cur.State == mountset.StateMounted {
			e.rec = cur
		} else {
			e.rec, err = mountset.Up(e.opt)
			if err != nil {
				e.close()
				return nil, err
			}
			e.mounted = !e.rec.AlreadyMounted
		}
		pkgmgr.RemoveStalePolicy(e.root)
		return e, nil
	}
	e.rec, err = mountset.Current(e.opt)
	if errors.Is(err, mountset.ErrNotMounted) {
		e.rec = nil
		return e, nil
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

// undoMount ejects the card when this command mounted it and then failed
// before changing anything, so that "nothing changed" holds.
func (e *pkgEnv) undoMount() {
	if e.mounted && e.rec != nil {
		if _, err := mountset.Eject(mountset.Options{ConfigPath: e.opt.ConfigPath, Root: e.opt.Root}); err == nil {
			e.mounted = false
		}
	}
}

// statusOverlay finds the overlay holding the status database: the
// target directory covering it and the path inside.
func (e *pkgEnv) statusOverlay() (*overlay.Mount, string) {
	if e.rec == nil {
		return nil, ""
	}
	full := filepath.Join(e.root, e.m.StatusPath())
	for i := range e.rec.Overlays {
		o := &e.rec.Overlays[i]
		if rel, err := filepath.Rel(o.Target, full); err == nil && !strings.HasPrefix(rel, "..") {
			return o, rel
		}
	}
	return nil, ""
}

// dbs is the package database three ways.
type dbs struct {
	merged      []pkgmgr.Package // what the system sees
	base        []pkgmgr.Package // the base root's own database
	baseRaw     []byte
	cardHasCopy bool // the card holds a copy of the database
	snapshot    []pkgmgr.Package
	snapHash    string // sha256 of the base database when ovpkg last wrote the card
}

// readDBs reads the merged, base and card views of the database.
func (e *pkgEnv) readDBs() (*dbs, error) {
	d := &dbs{}
	var err error
	d.merged, err = pkgmgr.Installed(e.m)
	if err != nil {
		return nil, err
	}
	o, rel := e.statusOverlay()
	if o == nil { // not mounted, or the database is not under an overlay
		d.base = d.merged
		d.baseRaw, _ = os.ReadFile(filepath.Join(e.root, e.m.StatusPath()))
		return d, nil
	}
	// The card's layers: the upper dir, then every lower but the last
	// (the base directory itself).
	layers := append([]string{o.Upper}, o.Lowers[:len(o.Lowers)-1]...)
	for _, l := range layers {
		if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
			d.cardHasCopy = true
			break
		}
	}
	d.baseRaw, err = readBase(o.Lowers[len(o.Lowers)-1], o.Target, rel)
	if err != nil {
		return nil, fmt.Errorf("reading the base's package database: %w", err)
	}
	if d.baseRaw != nil {
		d.base, err = e.m.ParseStatus("base:"+e.m.StatusPath(), bytes.NewReader(d.baseRaw))
		if err != nil {
			return nil, err
		}
	}
	d.snapHash, d.snapshot = readSnapshot(filepath.Join(e.root, snapshotPath))
	return d, nil
}

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
	cmd := exec.Command("/proc/self/exe", readBaseArg, target, rel)
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

// readBaseArg is the hidden command readBase runs.
const readBaseArg = "__read-base"

func readBaseCommand() *cli.Command {
	return &cli.Command{
		Name: readBaseArg, Hidden: true, SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef("%s TARGET PATH", readBaseArg)
			}
			target, rel := c.Args().Get(0), c.Args().Get(1)
			// We run in a private mount namespace (the parent asked for
			// CLONE_NEWNS): unmount the overlay(s) stacked on target.
			for i := 0; i < 4; i++ {
				tab, err := mount.Self()
				if err != nil {
					return err
				}
				m := tab.Lookup(target)
				if m == nil || m.FSType != "overlay" {
					break
				}
				if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
					return fmt.Errorf("umount %s in a private namespace: %w", target, err)
				}
			}
			b, err := os.ReadFile(filepath.Join(target, rel))
			if errors.Is(err, os.ErrNotExist) {
				return cli.Exit("", 3)
			}
			if err != nil {
				return err
			}
			_, err = c.App.Writer.Write(b)
			return err
		},
	}
}

// writeSnapshot notes, on the card, the base database the card's copy was
// made from: its sha256 and "package version" lines.
func (e *pkgEnv) writeSnapshot(d *dbs) {
	if d == nil || d.baseRaw == nil || e.rec == nil {
		return
	}
	var b strings.Builder
	sum := sha256.Sum256(d.baseRaw)
	fmt.Fprintf(&b, "sha256 %s\n", hex.EncodeToString(sum[:]))
	for _, p := range d.base {
		if p.Installed() {
			fmt.Fprintf(&b, "%s %s\n", p.Key(), p.Version)
		}
	}
	p := filepath.Join(e.root, snapshotPath)
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

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// broken lists packages the package manager left half-done.
func broken(pkgs []pkgmgr.Package) []string {
	var out []string
	for _, p := range pkgs {
		if p.Broken() {
			out = append(out, p.Key()+" ("+p.State+")")
		}
	}
	sort.Strings(out)
	return out
}

// holders lists processes (other than this one) using the card or its
// overlays.
func (e *pkgEnv) holders() []busy.Holder {
	if e.rec == nil {
		return nil
	}
	tab, err := mount.Self()
	if err != nil {
		return nil
	}
	var devs []uint64
	for _, o := range e.rec.Overlays {
		if m := tab.OverlayUsingUpper(o.Upper); m != nil {
			devs = append(devs, mount.Dev(m))
		}
	}
	if m := tab.Lookup(e.rec.CardMount); m != nil {
		devs = append(devs, mount.Dev(m))
	}
	h, _ := busy.ScanExcept("/proc", devs, []int{os.Getpid()})
	return h
}

// resolveArgs makes local package file arguments absolute against the
// directory ovpkg was started in (selfexec.Cwd: after a re-exec from
// memory the working directory is /).
func resolveArgs(args []string) ([]string, error) {
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

// change runs the package manager as a transaction (txn.Run): its writes
// go into a new layer on the card, kept only when it succeeds. On failure
// the layer is dropped and the card is exactly as before; the error says
// so. When the overlays are busy txn runs it in the current top layer
// (it says so), and runPM's explanation of the database state applies.
func (e *pkgEnv) change(command string, pkgs []string, argv []string, what string) (*pkgmgr.RunResult, error) {
	var res *pkgmgr.RunResult
	err := txn.Run(e.opt, command, pkgs, func() error {
		var perr error
		res, perr = e.runPM(argv, what)
		if perr != nil && res != nil {
			// The layer is about to be dropped: the long explanation
			// (half-done packages, what to run next) no longer applies.
			return pmFailure(res, what, argv[0])
		}
		return perr
	})
	if cur, cerr := mountset.Current(e.opt); cerr == nil {
		e.rec = cur
	}
	var undone *txn.UndoneError
	if errors.As(err, &undone) && res != nil && res.NoSpace {
		err = fmt.Errorf("%w; `ovpkg eject` still works", err)
	}
	return res, err
}

// pmFailure is the short form of a failed run, for a transaction that
// is undone.
func pmFailure(res *pkgmgr.RunResult, what, prog string) error {
	switch {
	case res.Interrupted != nil:
		return fmt.Errorf("%s interrupted (%v): %s was stopped: %w", what, res.Interrupted, prog, res.Err())
	case res.NoSpace:
		return fmt.Errorf("the card filled up while %s (No space left on device): %w", what, res.Err())
	}
	return fmt.Errorf("%s failed (%s exit status %d): %w", what, prog, res.Code, res.Err())
}

// runPM runs argv with the safety net and explains failures.
func (e *pkgEnv) runPM(argv []string, what string) (*pkgmgr.RunResult, error) {
	runDir, err := mountset.RunDir(e.opt)
	if err != nil {
		return nil, err
	}
	res, err := pkgmgr.Run(context.Background(), argv, pkgmgr.RunOptions{
		Root:      e.root,
		Stdout:    e.c.App.Writer,
		Stderr:    e.c.App.ErrWriter,
		PolicyRC:  e.m.Name() == "apt",
		PolicyLog: filepath.Join(runDir, fmt.Sprintf("policy-rc.d.%d.log", os.Getpid())),
	})
	if err != nil {
		return nil, err
	}
	if res.PolicyNote != "" {
		e.say("%s", res.PolicyNote)
	}
	if len(res.NotStarted) > 0 {
		e.say("services not started (so they do not hold the card): %s; start them with `service NAME start` (a running service must be stopped before eject)",
			strings.Join(res.NotStarted, ", "))
	}
	if res.Err() == nil {
		return res, nil
	}
	// Explain what state things are in.
	merged, _ := pkgmgr.Installed(e.m)
	half := broken(merged)
	state := "the package database is consistent"
	next := ""
	if len(half) > 0 {
		state += ", with packages left half-done: " + strings.Join(half, ", ")
		next = fmt.Sprintf("; run `%s` to finish them, or `ovpkg remove` them", e.m.RecoverHint())
	}
	if !res.NoSpace && e.rec != nil {
		if sp, err := pkgmgr.StatSpace(e.rec.CardMount); err == nil && sp.Avail < 256<<10 {
			res.NoSpace = true
		}
	}
	switch {
	case res.Interrupted != nil:
		return res, fmt.Errorf("%s interrupted (%v): %s was stopped; %s%s: %w", what, res.Interrupted, argv[0], state, next, res.Err())
	case res.NoSpace:
		return res, fmt.Errorf("the card filled up while %s (No space left on device): %s backed out what it was unpacking; %s%s; free space with `ovpkg remove` or use a bigger card; `ovpkg eject` still works: %w",
			what, argv[0], state, next, res.Err())
	}
	return res, fmt.Errorf("%s failed (%s exit status %d); %s%s: %w", what, argv[0], res.Code, state, next, res.Err())
}
