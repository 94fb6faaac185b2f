// Package overlay mounts and unmounts the overlayfs stacks ovpkg puts over
// root directories, with every overlay feature that matters pinned
// explicitly instead of left to the kernel's build-time defaults.
//
// Pinned options (see Pinned) and why:
//
//   - index=off: the inode index ties an upper layer to the exact lower
//     filesystem it was first used with (mount fails with ESTALE after the
//     base changes, e.g. after a base upgrade or when the card moves to
//     another device) and needs NFS-style file handles on every lower
//     filesystem. ovpkg's cards must survive a changing base (issue 5).
//     With index=off the kernel only warns when an upperdir is shared, so
//     Stack refuses an upperdir another overlay already uses.
//   - metacopy=off and redirect_dir=nofollow: both make the overlay follow
//     path xattrs stored in the upper layer; a crafted card could use them
//     to expose arbitrary lower files. With nofollow the kernel neither
//     creates nor follows redirects; renaming a directory that came from
//     the base returns EXDEV and tools (mv, dpkg) fall back to copying.
//   - xino=auto: one st_dev for every file of a merged directory and
//     unique inode numbers where the layers leave enough inode bits (ext2
//     upper, 64-bit kernel). Tools such as du, find -xdev and tar, and
//     ovpkg's own busy scan (which matches st_dev), rely on it. On kernels
//     where xino cannot work it falls back to off without failing.
//   - nfs_export=off: needs index=on; stated so the module parameter
//     cannot turn it on.
//   - no userxattr: ovpkg runs as root and the card's ext2 keeps the
//     overlay's trusted.* xattrs (whiteouts, opaque directories).
//
// Every overlay is mounted nodev: a hostile card could otherwise carry a
// world-writable block device node that appears under /usr. The card's own
// mount flags (nosuid, noexec) do not reach through an overlay, so an
// overlay is mounted nosuid when Mount.NoSuid says so: mountset sets it for
// a card the host does not trust (the trust package), which also strips
// the base's setuid programs such as su in /usr/bin until the card is
// approved. FromMount reads the flag back from the live mount.
//
// Mounting uses the new mount API (fsopen, fsconfig "lowerdir+" once per
// layer, fsmount, move_mount; Linux 6.8+) so the number of layers is not
// limited by mount(2)'s one-page option string, and the kernel's own
// message for a refused parameter is kept in the error. Older kernels get
// mount(2) with an escaped option string.
//
// overlay does not decide which directories are overlaid, where the card
// is, or what the layers are (card and mountset do), and it never
// unmounts lazily.
package overlay
