// Package mount wraps mount(2) and umount2(2) and answers questions about
// the mount table.
//
// It owns: errors that keep the operation, source, target, type, flags and
// errno (callers test errors.Is(err, unix.EBUSY), never the text), and a
// Table read from /proc/self/mountinfo (or any io.Reader, for fixtures)
// through github.com/moby/sys/mountinfo, with the lookups the suite needs:
// is a path a mount point, which mounts lie under a path (deepest first, the
// order to unmount in), which overlay uses a given upperdir.
//
// It does not decide what to mount: overlay builds overlayfs options, loop
// makes block devices, mountset orchestrates. It never unmounts lazily
// (MNT_DETACH) on its own: a caller that wants that says so.
package mount
