// Package trustpath checks host paths that decide what root does: the
// config file and its directories, RUN_DIR and the state files in it. A
// path is trusted when nobody but root (or the user running the command,
// who could do the same things anyway) can change what it names:
//
//   - every directory from / down to it is owned by root (or that user)
//     and not writable by group or others, unless it has the sticky bit
//     (in /tmp, say, only an entry's owner may rename or remove it, and
//     the entry itself must then be root's);
//   - a symbolic link on the way is followed only when it is owned by
//     root (or that user) and lies in such a directory;
//   - the file itself is opened with O_NOFOLLOW (a symbolic link there is
//     refused, not followed) and O_CLOEXEC, and checked on the open
//     descriptor (fstat), not by name: a regular file, owned by root (or
//     that user), not writable by group or others, one link.
//
// Because each directory on the way can only be changed by root, nothing
// checked can be swapped between the check and the use by anyone else.
//
// It does not resolve paths below a card's root (that is the card
// package's beneath-resolution) and does not decide what a file may
// contain.
package trustpath
