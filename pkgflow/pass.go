package pkgflow

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/pkgmgr"
)

// Pass runs op (update, configure, or the package manager with the
// user's own arguments) without a plan or a transaction, but with the
// same safety net: the lock, the card mounted, the PID namespace, the
// policy-rc.d, downloads into the archive directory (deleted afterwards
// with KEEP_ARCHIVES=no). Its writes land in the card's working layer.
func Pass(ctx context.Context, opt Options, op pkgmgr.Op, args []string, what string) (res *Result, retErr error) {
	var undo undoList
	e, err := open(opt, true, &undo)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	res = &Result{Op: op, Args: args}
	arch, err := openArchives(e.mountOpt, e.Rec, e.Root)
	if err != nil {
		if uerr := undo.run(); uerr != nil {
			err = fmt.Errorf("%w; %w", err, uerr)
		}
		return res, err
	}
	argv, err := e.M.Argv(op, args, pkgmgr.ArgvOptions{Yes: opt.Yes, ArchiveDir: arch.dir})
	if err != nil {
		if uerr := undo.run(); uerr != nil {
			err = fmt.Errorf("%w; %w", err, uerr)
		}
		return res, err
	}
	undo.forget() // from here on the package manager may change things
	if err := arch.begin(); err != nil {
		return res, err
	}
	defer func() {
		freed, err := arch.cleanup()
		res.Freed = freed
		if err != nil && retErr == nil {
			e.say("warning: deleting the downloads: %v", err)
		}
	}()
	d, _ := e.ReadDBs()
	runDir, err := mountset.RunDir(e.mountOpt)
	if err != nil {
		return res, err
	}
	e.p.Phase(string(op), "%s (%s)", what, strings.Join(argv, " "))
	run, err := pkgmgr.Run(ctx, argv, pkgmgr.RunOptions{
		Root:      e.Root,
		Stdin:     opt.in(),
		Stdout:    opt.Stdout,
		Stderr:    opt.Stderr,
		PolicyRC:  e.M.Name() == "apt",
		PolicyLog: filepath.Join(runDir, fmt.Sprintf("policy-rc.d.%d.log", os.Getpid())),
		Writable:  e.writable(arch.dir, runDir),
	})
	e.p.Done()
	if err != nil {
		return res, err
	}
	res.NotStarted, res.PolicyNote = run.NotStarted, run.PolicyNote
	if run.Err() != nil {
		return res, e.explainUntracked(run, what, argv[0])
	}
	if op != pkgmgr.OpUpdate && op != pkgmgr.OpRaw {
		e.writeSnapshot(d)
	}
	return res, nil
}

// explainUntracked says how a run that is no transaction failed: the
// database state and what to run next.
func (e *Env) explainUntracked(run *pkgmgr.RunResult, what, prog string) error {
	merged, _ := pkgmgr.Installed(e.M)
	half := Broken(merged)
	state := "the package database is consistent"
	next := ""
	if len(half) > 0 {
		state += ", with packages left half-done: " + strings.Join(half, ", ")
		next = fmt.Sprintf("; run `%s` to finish them, or `ovpkg remove` them", e.M.RecoverHint())
	}
	switch {
	case run.Code == pkgmgr.ExitProtect:
		return fmt.Errorf("%s: %s did not run: the base root could not be made read-only for it (see above)", what, prog)
	case run.ReadOnly != "":
		return fmt.Errorf("%s: something wrote outside the overlaid directories (%s), which stay read-only while the package manager runs: %q; %s%s: %w",
			what, strings.Join(targets(e.Rec), " "), run.ReadOnly, state, next, run.Err())
	case run.Interrupted != nil:
		return fmt.Errorf("%s interrupted (%v): %s was stopped; %s%s: %w", what, run.Interrupted, prog, state, next, run.Err())
	case run.NoSpace:
		return fmt.Errorf("the card filled up while %s (No space left on device): %s backed out what it was unpacking; %s%s; free space with `ovpkg remove` or use a bigger card; `ovpkg eject` still works: %w",
			what, prog, state, next, run.Err())
	}
	return fmt.Errorf("%s failed (%s exit status %d); %s%s: %w", what, prog, run.Code, state, next, run.Err())
}
