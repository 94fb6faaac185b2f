// Package card owns the versioned layout ovpkg keeps on a mounted card
// filesystem, all under one top directory so that nothing else on the card
// is touched:
//
//	<card>/ovpkg/FORMAT                  "ovpkg-card 1"
//	<card>/ovpkg/stack                   layer ids, bottom to top, one a line
//	<card>/ovpkg/layers/<id>/tree/       a root-like tree: tree/usr, tree/etc,
//	                                     ... are the overlay upperdirs
//	<card>/ovpkg/layers/<id>/work/<dir>  the overlay workdir for <dir>
//
// Cards made today hold one layer. The stack file leaves room for several
// (issue 5: per-install transactions): only the top layer's tree is the
// upperdir; the trees of the layers below become extra lowerdirs between
// the top and the root's own directory. Because each layer is a whole
// root-like tree, a package manager can be pointed at it (opkg --add-dest,
// dpkg --root) and flatten/commit can work tree by tree.
//
// The stack file is the only thing that says which layers exist: it is
// replaced atomically (write temp, fsync, rename, fsync directory), so a
// layer directory not named in it is garbage from an interrupted
// transaction, never half of the visible state.
//
// card does not mount anything, does not know about loop devices or the
// config file, and does not decide which root directories are overlaid
// (mountset does); it only names, creates and checks paths on a card that
// is already mounted.
package card
