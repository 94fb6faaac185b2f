// Package layer works on overlayfs layers as plain directories: it squashes
// several layers into one, copies trees like `cp -a`, removes from an upper
// layer what the layers below already hold, and snapshots and compares
// merged views (for tests and verification).
//
// Overlay semantics followed (overlayfs with index=off, metacopy=off,
// redirect_dir=nofollow, as package overlay pins them):
//
//   - a whiteout is a character device 0:0; it hides the entry of the same
//     name in every lower layer;
//   - a directory whose trusted.overlay.opaque xattr is "y" hides the lower
//     layers' directory of the same name (its contents replace theirs);
//   - an upper non-directory hides everything below it; an upper directory
//     over a lower non-directory (or whiteout) shows only its own contents;
//   - the topmost layer holding an entry gives its metadata.
//
// Squash walks the merged view of layers (bottom to top) and writes it into
// one new tree as it goes: directories parents first, names sorted, files
// copied by a few workers, a directory's metadata set once everything in
// it is written. Nothing holds the whole tree: memory does not grow with
// the number of files (a router has 32 MB). With KeepWhiteouts (squashing
// card layers that still sit over the base) whiteouts that may hide a base
// entry stay whiteouts and directories that hid lower contents become
// opaque; without it (squashing the base itself with the card's layers
// into a full root tree) whiteouts and opaque flags disappear. With Link, non-directories
// are hard-linked from the layers instead of copied (same filesystem; the
// layers are left untouched, so an interrupted squash loses nothing).
//
// Copy is `cp -a` (hardlink groups, xattrs including trusted.*, sparse
// files, device nodes, fifos, owners, modes, times) with a progress
// callback; files are copied by a few workers in parallel.
//
// Root is needed only for what needs it anyway: whiteouts (mknod), chown
// and trusted.* xattrs. The package does not mount anything, does not know
// the card layout (package card) and does not decide which layers to
// squash (package txn).
package layer
