// Package beneath resolves paths below a directory that holds untrusted
// contents (the card's root): no symbolic link is followed, not even as
// the last component; no mount point is crossed; nothing outside the
// directory is reached. Everything ovpkg reads, writes, creates or
// deletes below a card's root goes through a Root.
//
// Resolution is openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS (Linux 5.6). Where the kernel
// lacks openat2 (ENOSYS) the path is walked one component at a time with
// openat(O_NOFOLLOW), every directory's st_dev compared with the root's
// (that fallback cannot see a bind mount of the same filesystem).
//
// Go's os.Root is not used: it follows symbolic links as long as they
// stay inside the root, and it crosses mount points, so a card whose
// ovpkg/layers is a link to another card directory, or which has another
// filesystem mounted below it, would still be resolved. The card's
// layout has no links and no mounts, so any there is an attack or damage
// and is refused (ELOOP, EXDEV, kept in the error for errors.Is).
//
// Writes are atomic (internal/atomicfile.WriteAt in a parent directory
// opened beneath); RemoveAll works on descriptors (unlinkat), removes
// links as links and refuses to enter another filesystem.
//
// It does not decide what may be deleted or what a name read from a card
// file may be (package card does).
package beneath
