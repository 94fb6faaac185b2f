// Package txn makes every change ovpkg makes on a card a transaction: a new
// layer stacked over the previous ones that is kept only when the package
// manager succeeds, and the commands built on those layers (history,
// rollback, commit/squash, flatten, dedupe, drift and rebase).
//
// On-card files (next to package card's layout, under <card>/ovpkg):
//
//	txn       journal of the transaction in progress, one line:
//	          "begin <id> <cmd> <time> [pkg...]" or "squash <id> <cmd> <time> <old ids...>";
//	          written (fsync) before anything else, removed after the end
//	history   JSON lines, one per event (a committed transaction, a
//	          rollback, a squash, a rebase, a dedupe)
//	base/     what the base root held, at the last commit, for each file
//	          the card shadows (dpkg/opkg status, passwd, group, shadow,
//	          gshadow, conffiles): base/sums (sha256 per path) and a copy
//	          of each (the "old" side of a three-way rebase)
//
// A transaction: Begin writes the journal, creates the layer directory
// (fsynced) without listing it in the stack, and restacks the live
// overlays so that the new layer is the upper and the previous top a
// lower. Commit appends the id to the stack file (atomic rename: the
// commit point), then appends the history line and removes the journal.
// Abort restacks without the layer and deletes it. A layer directory the
// stack does not list is garbage of an interrupted transaction: Recover
// (run by every txn command, and to be run by ovmount) restacks the live
// overlays back onto the stack's layers when needed, deletes such
// directories and says "transaction N (cmd) was interrupted; the card is as
// before it".
//
// Restacking unmounts and remounts the overlays (overlayfs cannot change
// its layers in place). When other processes hold files on them, each old
// overlay is detached (umount2 MNT_DETACH) and the new one mounted in its
// place at once (detach.go): the holders keep the old overlay until they
// exit, new lookups see the new stack, and the record lists the old one
// (mountset.Record.Detached) until nobody holds it. A layer that is the
// upper of such a lingering overlay never becomes the upper of a new
// mount (the new top is always a fresh layer) and is not deleted while it
// lingers. Only when that cannot be arranged (or this ovpkg's own binary
// pins an overlay) does Begin fail with mountset.ErrBusy and Run fall back
// to running the change in the current top layer (said plainly). The
// running ovpkg itself is re-executed from memory first when its binary
// lives on an overlay.
//
// Crash points for tests (builds with the ovpkg_testhooks tag only, see
// internal/faults): each named step can make the process SIGKILL itself
// there (see CrashPoints).
//
// txn does not mount the card or decide the overlaid directories
// (mountset), does not run the package manager (app, pkgmgr) and does not
// know overlay semantics (layer) or merge rules (merge).
package txn
