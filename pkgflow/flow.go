package pkgflow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/ovpkg/ovpkg/internal/units"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/pkgmgr"
	"github.com/ovpkg/ovpkg/txn"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrNotConfirmed: the question was answered no.
	ErrNotConfirmed = errors.New("not confirmed")
	// ErrNeedYes: there was a question to ask and nobody to ask (no
	// terminal, no -y).
	ErrNeedYes = errors.New("confirmation needed")
	// ErrInBase: a remove touches packages of the base root (--force).
	ErrInBase = errors.New("part of the base root")
	// ErrPlanChanged: at the gate the package manager was about to do
	// something else than the plan that was confirmed.
	ErrPlanChanged = errors.New("the package manager's plan changed")
)

// errNothing ends a run that found nothing to do (its empty layer is
// dropped).
var errNothing = errors.New("nothing to do")

// Result is what a verb did.
type Result struct {
	Op   pkgmgr.Op
	Args []string
	// Plan is what was carried out (from the gate when there was one:
	// the package manager's own last word), or what would have been.
	Plan *pkgmgr.Plan
	// Nothing: there was nothing to do (already installed, up to date).
	Nothing bool
	// Services the package manager's scripts wanted to start or stop
	// and policy-rc.d held back ("service action"), and why none was
	// placed if it was not.
	NotStarted []string
	PolicyNote string
	// Holders are the processes that hold the card now (not ovpkg's own
	// pipeline).
	Holders []busy.Holder
	// Freed is what deleting the verb's downloads freed (KEEP_ARCHIVES=no).
	Freed int64
	// CardBytes is what the verb's transaction holds on the card (its
	// layer after the trim, as the history records it); -1 when unknown.
	CardBytes int64
}

// Change runs a package verb (pkgmgr.OpInstall, OpUpgrade, OpRemove,
// OpPurge) as one workflow with one undo list: lock and mount (undone:
// eject, when this verb mounted the card), the archive directory, one
// plan (skipped with -y when the package manager's job has a gate: then
// its gate brings the plan), the free-space check, the question, then the
// package manager in a transaction (undone: the layer dropped), downloads
// deleted (KEEP_ARCHIVES=no), the base snapshot and the holders. On
// failure the steps are undone newest first, every undo failure is
// joined into the error, and the error ends in "nothing was changed" only
// when that holds.
func Change(ctx context.Context, opt Options, op pkgmgr.Op, args []string) (res *Result, retErr error) {
	p := opt.Progress
	switch op {
	case pkgmgr.OpInstall, pkgmgr.OpUpgrade, pkgmgr.OpRemove, pkgmgr.OpPurge:
	default:
		return nil, fmt.Errorf("pkgflow: %q is not a package verb", op)
	}
	args, err := ResolveArgs(args)
	if err != nil {
		return nil, err
	}
	var undo undoList
	// changed: the card may hold changes that were not undone (a
	// committed or untracked run, or an undo that failed); undone: the
	// transaction layer was dropped, which its error says itself.
	changed, undone := false, false
	var arch *archives
	defer func() {
		if arch != nil {
			freed, err := arch.cleanup()
			if res != nil {
				res.Freed = freed
			}
			if err != nil {
				err = fmt.Errorf("deleting the downloads: %w", err)
				if retErr == nil {
					p.Say("warning: %v", err)
				} else {
					retErr = errors.Join(retErr, err)
				}
			}
		}
		if retErr == nil {
			undo.forget()
			return
		}
		if changed {
			return // the card is not as before: keep it mounted as it is
		}
		if uerr := undo.run(); uerr != nil {
			retErr = fmt.Errorf("%w; %w", retErr, uerr)
			return
		}
		if !undone {
			retErr = fmt.Errorf("%w; nothing was changed", retErr)
		}
	}()
	e, err := open(opt, true, &undo)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	res = &Result{Op: op, Args: args, CardBytes: -1}
	if arch, err = openArchives(e.mountOpt, e.Rec, e.Root); err != nil {
		return res, err
	}
	// Before the plan: opkg's plan downloads into its cache there, and
	// those files are the verb's downloads too.
	if err := arch.begin(); err != nil {
		return res, fmt.Errorf("archive directory %s: %w", arch.dir, err)
	}
	req := pkgmgr.Request{Op: op, Args: args, ArchiveDir: arch.dir}
	d, err := e.ReadDBs()
	if err != nil {
		return res, err
	}

	// One plan: skipped only when nothing is asked and the job's gate
	// will bring it (apt: its own resolver run is then the only one).
	var plan *pkgmgr.Plan
	var job *pkgmgr.Job
	if opt.Yes {
		job, err = e.M.Job(req, nil)
		if err != nil && !errors.Is(err, pkgmgr.ErrNeedPlan) {
			return res, fmt.Errorf("%s: %w", op, err)
		}
		if job != nil && job.Gate == nil {
			job = nil
		}
	}
	if job == nil {
		what := strings.Join(args, " ")
		if what == "" {
			what = "everything"
		}
		p.Phase("resolving", "resolving %s %s", op, what)
		plan, err = e.M.Plan(ctx, req)
		p.Done()
		if err != nil {
			return res, fmt.Errorf("%s: %w", op, err)
		}
		res.Plan = plan
		if plan.Empty() {
			res.Nothing = true
			return res, nil
		}
		if err := e.checkPlan(op, plan, d, arch.dir); err != nil {
			return res, fmt.Errorf("%s: %w", op, err)
		}
		if err := e.confirm(op, plan, d, arch.dir); err != nil {
			return res, fmt.Errorf("%s: %w", op, err)
		}
		if job, err = e.M.Job(req, plan); err != nil {
			return res, fmt.Errorf("%s: %w", op, err)
		}
	}

	ran := false
	var run *pkgmgr.RunResult
	hist0 := e.history()
	err = txn.Run(e.mountOpt, string(op), args, func() error {
		ran = true
		var rerr error
		run, rerr = e.runJob(ctx, op, job, plan, d, arch.dir, res)
		if rerr != nil {
			return rerr
		}
		if job.Gate != nil && !run.Gated {
			return errNothing // apt found nothing to do: drop the empty layer
		}
		// In the transaction's layer, next to the database it describes:
		// written after the commit it would land in the new working
		// layer, which then stays under every later transaction (one more
		// layer per install), and a rollback would not take it back.
		e.writeSnapshot(d)
		p.Phase("committing", "committing the transaction")
		return nil
	})
	p.Done()
	if cur, cerr := mountset.Current(e.mountOpt); cerr == nil {
		e.Rec = cur
	}
	if run != nil {
		res.NotStarted, res.PolicyNote = run.NotStarted, run.PolicyNote
	}
	var u *txn.UndoneError
	switch {
	case err == nil:
		changed = true
	case errors.Is(err, errNothing) && errors.As(err, &u):
		res.Nothing = true
		return res, nil
	case errors.As(err, &u):
		undone = true
		if run != nil && run.NoSpace && !e.mounted {
			err = fmt.Errorf("%w; `ovpkg eject` still works", err)
		}
	case ran:
		changed = true // untracked, or the undo itself failed
		if merged, merr := pkgmgr.Installed(e.M); merr == nil {
			if half := Broken(merged); len(half) > 0 {
				err = fmt.Errorf("%w; packages left half-done: %s; run `%s` to finish them, or `ovpkg remove` them", err, strings.Join(half, ", "), e.M.RecoverHint())
			}
		}
	}
	if err != nil {
		return res, err
	}
	// This run's history line (an untracked run's counts the whole top
	// layer: not this verb's alone).
	if h := e.history(); len(h) > len(hist0) {
		for _, x := range h[len(hist0):] {
			if x.Event == "txn" {
				res.CardBytes = x.Bytes
			}
		}
	}
	res.Holders = e.Holders()
	return res, nil
}

// history is the card's transaction history (nil when unreadable).
func (e *Env) history() []txn.Entry {
	c, err := txn.Open(e.mountOpt)
	if err != nil {
		return nil
	}
	h, _ := c.History()
	return h
}

// checkPlan refuses what would touch the base (a removal of its packages,
// a local file with paths outside the overlays) and what does not fit.
func (e *Env) checkPlan(op pkgmgr.Op, plan *pkgmgr.Plan, d *DBs, archiveDir string) error {
	if (op == pkgmgr.OpRemove || op == pkgmgr.OpPurge) && !e.Opt.Force {
		bix := pkgmgr.NewIndex(d.Base)
		var inBase []string
		for _, p := range plan.Remove {
			b, ok := bix.Lookup(p.Key())
			if !ok {
				b, ok = bix.Lookup(p.Name)
			}
			if ok && b.Installed() {
				inBase = append(inBase, p.Name+" ("+b.Version+")")
			}
		}
		if len(inBase) > 0 {
			verb := " are"
			if len(inBase) == 1 {
				verb = " is"
			}
			return fmt.Errorf("refusing: %s%s %w; removing through the overlay would leave whiteouts that hide the base's files (use --force to do it anyway)",
				strings.Join(inBase, ", "), verb, ErrInBase)
		}
	}
	if len(plan.Paths) > 0 {
		e.p.Phase("checking", "checking the paths of %d local package file(s)", len(plan.Paths))
		err := pkgmgr.CheckPaths(e.Root, e.Rec.Dirs, plan)
		e.p.Done()
		if err != nil {
			return err
		}
	}
	return e.checkSpace(plan, d, archiveDir)
}

// cardNeed is what plan takes on the card: the new packages' whole
// size plus the overhead. The package manager's own figure (apt's "After
// this operation", or the gate's sum) is the change, new sizes minus the
// replaced and removed packages'; but on the card nothing is freed by a
// transaction: it runs in a new layer, and the files of the versions it
// replaces or removes stay in the layers below (or the base) until
// `ovpkg commit` squashes them (seen with supertux: removing 239 MiB
// took 0.8 MiB more of the card). So the replaced and removed packages'
// sizes, as the merged database has them, are added back.
func cardNeed(plan *pkgmgr.Plan, d *DBs, statusSize int64) int64 {
	need := plan.InstallSize
	mix := pkgmgr.NewIndex(d.Merged)
	find := func(p pkgmgr.Package, version string) (pkgmgr.Package, bool) {
		m, ok := mix.Lookup(p.Key())
		if !ok {
			m, ok = mix.Lookup(p.Name)
		}
		return m, ok && (version == "" || m.Version == version)
	}
	for _, p := range plan.Install {
		if p.Old == "" {
			continue
		}
		if m, ok := find(p, p.Old); ok {
			need += m.InstalledSize
		}
	}
	for _, p := range plan.Remove {
		if m, ok := find(p, ""); ok {
			need += m.InstalledSize
		}
	}
	if need < 0 {
		need = 0
	}
	return need + pkgmgr.Overhead(statusSize, need)
}

func (e *Env) statusSize() int64 {
	if fi, err := os.Stat(filepath.Join(e.Root, e.M.StatusPath())); err == nil {
		return fi.Size()
	}
	return 0
}

func (e *Env) checkSpace(plan *pkgmgr.Plan, d *DBs, archiveDir string) error {
	if e.Opt.NoSpaceCheck || len(plan.Install) == 0 {
		return nil
	}
	return pkgmgr.CheckSpace(e.Rec.CardMount, cardNeed(plan, d, e.statusSize()), archiveDir, plan.DownloadSize,
		fmt.Sprintf("%d package(s)", len(plan.Install)))
}

// describe is the plan in a few lines: what changes, what is
// downloaded where, what the card needs.
func (e *Env) describe(op pkgmgr.Op, plan *pkgmgr.Plan, d *DBs, archiveDir string) []string {
	out := append([]string{}, plan.Notes...)
	list := func(label string, ps []pkgmgr.Package, old bool) {
		if len(ps) == 0 {
			return
		}
		var s []string
		for _, p := range ps {
			v := p.Version
			if old && p.Old != "" {
				v = p.Old + " -> " + p.Version
			}
			s = append(s, plan.Show(p)+" "+v)
		}
		out = append(out, fmt.Sprintf("%s (%d): %s", label, len(ps), strings.Join(s, ", ")))
	}
	var add, upg []pkgmgr.Package
	for _, p := range plan.Install {
		if p.Old != "" {
			upg = append(upg, p)
		} else {
			add = append(add, p)
		}
	}
	list("to install", add, false)
	list("to upgrade", upg, true)
	list("to remove", plan.Remove, false)
	if len(plan.Install) > 0 {
		free := ""
		if sp, err := pkgmgr.StatSpace(e.Rec.CardMount); err == nil {
			free = fmt.Sprintf(" (%s free)", units.Bytes(sp.Free))
		}
		dl := ""
		if plan.DownloadSize > 0 {
			dl = fmt.Sprintf("download %s into %s; ", units.Bytes(plan.DownloadSize), archiveDir)
		}
		out = append(out, fmt.Sprintf("%sthe card needs about %s%s", dl, units.Bytes(cardNeed(plan, d, e.statusSize())), free))
	} else if op == pkgmgr.OpRemove || op == pkgmgr.OpPurge {
		var n int64
		for _, p := range plan.Remove {
			n += p.InstalledSize
		}
		out = append(out, fmt.Sprintf("frees about %s of the card only once committed (`ovpkg commit`): until then the files stay in the layers below, so that `ovpkg rollback` can bring them back; a package of the base frees nothing (it leaves whiteouts)", units.Bytes(n)))
	}
	return out
}

// confirm shows the plan and asks once, unless -y. Without a terminal
// to ask on, it refuses, naming the flag.
func (e *Env) confirm(op pkgmgr.Op, plan *pkgmgr.Plan, d *DBs, archiveDir string) error {
	lines := e.describe(op, plan, d, archiveDir)
	for _, l := range lines {
		e.say("%s", l)
	}
	if e.Opt.Yes {
		return nil
	}
	if !e.Opt.inTerminal() {
		return fmt.Errorf("%w: not asking without a terminal; run again with --yes (-y) to go ahead", ErrNeedYes)
	}
	e.p.Write([]byte("Do you want to continue? [Y/n] "))
	answer, err := bufio.NewReader(e.Opt.in()).ReadString('\n')
	if err != nil && answer == "" {
		e.p.Write([]byte("\n"))
		return fmt.Errorf("%w (no answer: %v)", ErrNotConfirmed, err)
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "", "y", "yes":
		return nil
	}
	return ErrNotConfirmed
}

// runJob runs the package manager's job with the safety net (PID
// namespace, policy-rc.d) and its progress; at the gate it checks the
// plan the package manager states (against the confirmed one, and the
// free space now that the downloads are in) and lets it go on or stops it.
func (e *Env) runJob(ctx context.Context, op pkgmgr.Op, job *pkgmgr.Job, plan *pkgmgr.Plan, d *DBs, archiveDir string, res *Result) (*pkgmgr.RunResult, error) {
	runDir, err := mountset.RunDir(e.mountOpt)
	if err != nil {
		return nil, err
	}
	p := e.p
	phase := ""
	onEvent := func(ev pkgmgr.Event) {
		if ev.Kind != pkgmgr.EventProgress {
			return
		}
		if ev.Phase != phase {
			phase = ev.Phase
			switch phase {
			case pkgmgr.PhaseDownload:
				size := "the archives"
				if plan != nil && plan.DownloadSize > 0 {
					size = units.Bytes(plan.DownloadSize)
				}
				p.Phase(phase, "downloading %s into %s", size, archiveDir)
			case pkgmgr.PhaseInstall:
				p.Phase(phase, "installing %s", countPackages(res.Plan, false))
			case pkgmgr.PhaseRemove:
				p.Phase(phase, "removing %s", countPackages(res.Plan, true))
			default:
				p.Phase(phase, "%s", phase)
			}
		}
		p.Progress(ev.Percent, ev.Text)
	}
	ro := pkgmgr.RunOptions{
		Root:      e.Root,
		Stdin:     e.Opt.in(),
		Stdout:    e.Opt.Stdout,
		Stderr:    e.Opt.Stderr,
		Env:       append([]string{"LC_ALL=C"}, job.Env...),
		PolicyRC:  e.M.Name() == "apt",
		PolicyLog: filepath.Join(runDir, fmt.Sprintf("policy-rc.d.%d.log", os.Getpid())),
		StatusFD:  job.StatusFD,
		Parse:     job.Parse,
		OnEvent:   onEvent,
		Writable:  e.writable(archiveDir, runDir),
	}
	if job.Gate != nil {
		ro.GateDir = runDir
		ro.Gate = func(input []string) error {
			p.Phase("checking", "checking the archives %s fetched (present, valid, space on the card)", job.Argv[0])
			gp, err := job.Gate(ctx, input)
			if err == nil && plan != nil {
				err = samePlan(plan, gp)
			}
			if err == nil {
				err = e.checkSpace(gp, d, "")
			}
			if err != nil {
				p.Say("stopping %s before it changes anything: %v", job.Argv[0], err)
				return err
			}
			res.Plan = gp
			return nil
		}
	}
	what := string(op) + "ing " + strings.Join(res.Args, " ")
	switch op {
	case pkgmgr.OpUpgrade:
		what = "upgrading " + strings.Join(res.Args, " ")
	case pkgmgr.OpRemove, pkgmgr.OpPurge:
		what = "removing " + strings.Join(res.Args, " ")
	}
	what = strings.TrimSpace(what)
	before, _ := pkgmgr.Installed(e.M)
	// Until the package manager reports progress (apt first reads its
	// package lists: seconds), this phase keeps the line alive.
	p.Phase("running", "running %s", pkgmgr.ShortArgv(job.Argv))
	run, err := pkgmgr.Run(ctx, job.Argv, ro)
	p.Done()
	if err != nil {
		return nil, err
	}
	if run.Err() == nil {
		return run, e.judgeClean(before, run, what)
	}
	if run.Vetoed != nil {
		return run, run.Vetoed
	}
	if !run.NoSpace && e.Rec != nil {
		if sp, err := pkgmgr.StatSpace(e.Rec.CardMount); err == nil && sp.Avail < 256<<10 {
			run.NoSpace = true
		}
	}
	return run, e.explain(run, what, job.Argv[0])
}

// judgeClean checks a run that exited 0 against the database: opkg
// exits 0 after "Collected errors" even when a package was left
// unconfigured. A package left half-done that was not so before fails the
// change (its transaction is undone); otherwise the collected errors are
// repeated as a warning (a conffile the user changed is kept, the
// package's new one beside it as NAME-opkg).
func (e *Env) judgeClean(before []pkgmgr.Package, run *pkgmgr.RunResult, what string) error {
	after, err := pkgmgr.Installed(e.M)
	if err != nil {
		return fmt.Errorf("reading the package database after %s: %w", what, err)
	}
	if bad := pkgmgr.NewlyBroken(before, after); len(bad) > 0 {
		var names []string
		for _, p := range bad {
			names = append(names, p.Name+" ("+p.State+")")
		}
		msg := fmt.Sprintf("%s exited 0 but left %s half-done", e.M.Name(), strings.Join(names, ", "))
		if len(run.Collected) > 0 {
			msg += ": " + strings.Join(run.Collected, "; ")
		}
		return fmt.Errorf("%s failed: %s", what, msg)
	}
	if len(run.Collected) > 0 {
		e.say("%s reported errors but finished (every package is installed; the change is kept): %s",
			e.M.Name(), strings.Join(run.Collected, "; "))
	}
	return nil
}

// writable are the paths the package manager may write: the overlays,
// the card, the archive directory, RUN_DIR, the root's /tmp and
// /var/tmp; the rest of the base root is read-only to it.
func (e *Env) writable(archiveDir, runDir string) []string {
	w := targets(e.Rec)
	// /run is volatile by definition (a tmpfs on a booted system, so
	// writable anyway); where it is only a directory (containers), adduser
	// still needs its lock file /run/adduser.
	w = append(w, e.Rec.CardMount, runDir, filepath.Join(e.Root, "tmp"), filepath.Join(e.Root, "var/tmp"), filepath.Join(e.Root, "run"))
	if archiveDir != "" {
		w = append(w, archiveDir)
	}
	return w
}

// explain says how a package-manager run failed, briefly: the
// transaction is about to be dropped (Change adds the database state
// when it was not).
func (e *Env) explain(run *pkgmgr.RunResult, what, prog string) error {
	if le := pkgmgr.LineError(run.ErrorLine); le != nil {
		return fmt.Errorf("%s: %w", what, le)
	}
	switch {
	case run.Code == pkgmgr.ExitProtect:
		return fmt.Errorf("%s: %s did not run: the base root could not be made read-only for it (see above)", what, prog)
	case run.ReadOnly != "":
		return fmt.Errorf("%s refused: a package or its scripts write outside the overlaid directories (%s), which stay read-only while the package manager runs: %q: %w",
			what, strings.Join(targets(e.Rec), " "), run.ReadOnly, run.Err())
	case run.Interrupted != nil:
		return fmt.Errorf("%s interrupted (%v): %s was stopped: %w", what, run.Interrupted, prog, run.Err())
	case run.NoSpace:
		return fmt.Errorf("the card filled up while %s (No space left on device): %w", what, run.Err())
	}
	if run.ErrorLine != "" {
		return fmt.Errorf("%s failed (%s exit status %d: %s): %w", what, prog, run.Code, run.ErrorLine, run.Err())
	}
	return fmt.Errorf("%s failed (%s exit status %d): %w", what, prog, run.Code, run.Err())
}

// samePlan checks that at the gate the package manager does what was
// confirmed: the same packages at the same versions.
func samePlan(want, got *pkgmgr.Plan) error {
	key := func(ps []pkgmgr.Package) []string {
		var s []string
		for _, p := range ps {
			s = append(s, p.Name+" "+p.Version)
		}
		sort.Strings(s)
		return s
	}
	w, g := key(want.Install), key(got.Install)
	wr, gr := names(want.Remove), names(got.Remove)
	if strings.Join(w, ",") != strings.Join(g, ",") || strings.Join(wr, ",") != strings.Join(gr, ",") {
		return fmt.Errorf("%w since it was confirmed: now it installs %s and removes %s; run the command again",
			ErrPlanChanged, orNothing(g), orNothing(gr))
	}
	return nil
}

func names(ps []pkgmgr.Package) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name)
	}
	sort.Strings(s)
	return s
}

func orNothing(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

func countPackages(plan *pkgmgr.Plan, remove bool) string {
	if plan == nil {
		return "the packages"
	}
	n := len(plan.Install)
	if remove {
		n = len(plan.Remove)
	}
	if n == 1 {
		return "1 package"
	}
	return fmt.Sprintf("%d packages", n)
}
