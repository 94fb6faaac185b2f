// Package mountset is the orchestration behind ovmount, uovmount and
// eject: it reads the trusted config, validates the card image, attaches
// it to a loop device, mounts the card, opens (or initialises) the on-card
// layout, stacks one overlay per root directory, and records exactly what
// it did in RUN_DIR (default /run/ovpkg/mounts.json) so that uovmount and
// eject undo exactly that.
//
// Every step that fails undoes the steps before it (overlays newest
// first, the card mount, the loop device), so ovmount is all-or-nothing;
// a second ovmount finds the record and the live mounts and changes
// nothing. One flock on RUN_DIR/lock serialises every ovpkg command that
// changes mounts or the card; a second caller fails at once and is told
// which process holds it.
//
// Eject refuses (naming PID, command and path) while any process holds a
// file, working directory, root or mapping on an overlay or on the card;
// it never unmounts lazily. Old overlays that a transaction's restack
// (package txn) detached while processes held them are listed in the
// record (Record.Detached, with their device and unique mount ID) until
// nobody holds them (PruneDetached); eject refuses while any is held,
// uovmount names them. When the ovpkg binary itself lives under an
// overlaid directory it first re-executes from a memfd copy
// (internal/selfexec) so that it does not pin what it removes.
//
// mountset does not parse images (image), make loop devices (loop), build
// overlay options (overlay), know the layout's paths (card) or find
// holders (busy); it decides the order and the undo.
//
// The mounts are made in the caller's mount namespace: on a device that
// is the system-wide one, as the seed tools did. Only the tests run the
// commands inside a private namespace.
package mountset
