// Package busy finds the processes that hold a mount: those whose working
// directory, root, executable, an open file descriptor or a memory
// mapping lies on one of the given devices (st_dev numbers). eject uses it
// to name each holder (PID, command, path) instead of failing with a bare
// EBUSY or falling back to a lazy unmount.
//
// It reads a /proc tree (normally "/proc"; tests pass a fixture) and
// matches by device number: the st_dev of what /proc/PID/{cwd,root,exe}
// and /proc/PID/fd/* point to (stat follows the magic links, so this works
// for processes in other mount namespaces), the mount those were reached
// through (overlayfs reports pseudo devices for files), the device field
// of /proc/PID/maps, and open block device nodes whose st_rdev is one of
// the devices (a process holding /dev/loopN open keeps the card's
// autoclear loop device attached). Processes that exit during the scan
// are skipped.
//
// It does NOT unmount, kill or signal anything, look at threads whose
// working directory differs from their thread group leader's, or find
// holders that are not processes (another mount stacked on top, a loop
// device backed by a file on the mount, an NFS export, a swap file).
// See docs/busy.md for which st_dev numbers an overlayfs reports.
package busy
