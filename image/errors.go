package image

import "errors"

// Sentinel errors, wrapped in *Error. Test them with errors.Is.
var (
	// ErrNoTable: the file has no MBR signature, so no partition table.
	ErrNoTable = errors.New("no partition table")
	// ErrBadPartition: the table is inconsistent (overlapping entries,
	// corrupt GPT header, entries outside the disk) or holds no Linux
	// partition, or the filesystem is larger than its partition.
	ErrBadPartition = errors.New("bad partition table")
	// ErrNotExt: the partition holds no ext2/ext3/ext4 filesystem (wrong
	// type, zeroed or inconsistent superblock).
	ErrNotExt = errors.New("not an ext2/ext3/ext4 filesystem")
	// ErrTruncated: the file ends before the partition (or the table)
	// does: a truncated copy, or a table pointing past the end.
	ErrTruncated = errors.New("image file is truncated")
	// ErrUnclean: the filesystem was not cleanly unmounted (or is mounted
	// now, or has a journal or orphans to recover); run e2fsck first.
	ErrUnclean = errors.New("filesystem not cleanly unmounted")
	// ErrFSErrors: the kernel recorded errors in the superblock; run
	// e2fsck first.
	ErrFSErrors = errors.New("filesystem has errors recorded")
	// ErrUnsupported: the filesystem uses features the kernel cannot
	// mount read-write (unknown incompat or ro_compat bits).
	ErrUnsupported = errors.New("filesystem uses unsupported features")
)

var sentinels = []error{ErrNoTable, ErrBadPartition, ErrNotExt, ErrTruncated, ErrUnclean, ErrFSErrors, ErrUnsupported}

// Error is an image problem: which file, what is wrong (with what to do
// about it), and the underlying sentinel or system error.
type Error struct {
	Path string
	Msg  string
	Err  error

	quiet bool // Msg already explains Err; leave Err's text out
}

func (e *Error) Error() string {
	s := "image " + e.Path + ": "
	switch {
	case e.Msg == "" && e.Err != nil:
		return s + e.Err.Error()
	case e.Err == nil || e.quiet || isSentinel(e.Err):
		return s + e.Msg
	}
	return s + e.Msg + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if err == s {
			return true
		}
	}
	return false
}
