// Package pkgflow owns the package-verb workflow: `ovpkg install`,
// `upgrade` and `remove` (Change) and the plan-less verbs `update`,
// `configure` and `pm` (Pass), for every package manager adapter
// (pkgmgr: apt, opkg, and apk when its adapter lands). app only parses
// flags and prints the Result.
//
// Change, in order, with one undo list for the whole verb:
//
//  1. open: detect the package manager, leave the overlays (re-exec from
//     memory when needed), take the ovpkg lock, mount the card when it is
//     not (undo: eject);
//  2. the archive directory: ARCHIVE_DIR (default
//     <card>/ovpkg/cache/archives, outside every layer; a configured one
//     inside an overlaid directory is refused), what a killed verb left
//     there deleted (KEEP_ARCHIVES=no);
//  3. one plan: Manager.Plan (apt: one `apt-get --print-uris -V`), shown
//     with the download size and the card space needed, checked (base
//     packages a remove would take, paths of local package files, free
//     space on the card and where the archives go), and asked about once,
//     before anything is downloaded; without -y and without a terminal it
//     refuses, naming --yes. With -y and a job that has a gate (apt),
//     the plan run is skipped: the gate brings the plan;
//  4. the job (Manager.Job) in a transaction (txn.Run: a new layer, kept
//     only on success; undo: the layer dropped), run by pkgmgr.Run: PID
//     namespace, policy-rc.d, the base root read-only except the overlays,
//     the card, the archive directory and RUN_DIR, progress from the
//     manager's status descriptor, and the gate: after downloading and
//     before dpkg, the archives the manager names are checked (missing:
//     pkgmgr.ErrArchiveMissing, invalid: pkgmgr.ErrBadArchive), compared
//     with the confirmed plan and the card's free space checked again;
//  5. downloads deleted (KEEP_ARCHIVES=no; success or failure), the base
//     snapshot written, the holders of the card named (not ovpkg's own
//     pipeline).
//
// On failure the undo list runs newest first and every undo failure is
// joined into the error; "nothing was changed" ends the message only
// when it holds (a transaction that was undone says so itself; one that
// ran untracked or could not be undone leaves the card mounted as it is).
//
// The Manager contract (pkgmgr.Manager) the flow relies on:
//
//	Plan(ctx, Request) (*Plan, error)   what Request{Op, Args, ArchiveDir}
//	                                    would do; no download, no change
//	Job(Request, *Plan) (*Job, error)   the one run that does it; with a nil
//	                                    plan, ErrNeedPlan unless it has a Gate
//	Job{Argv, Env, StatusFD, Parse, Gate}
//	    Parse(stream, line) []Event      progress (Phase, Percent, Text)
//	    Gate(ctx, input) (*Plan, error)  what the manager hands the gate
//	                                     (pkgmgr.GateHook), as the plan it
//	                                     is about to carry out
//
// An adapter without a gate (opkg) is planned first every time; the flow
// is the same. Adapters download into Request.ArchiveDir when they can.
//
// pkgflow does NOT parse package-manager output (pkgmgr does), mount or
// restack anything itself (mountset, txn), or print results (app); its
// own progress lines go through internal/progress.
package pkgflow
