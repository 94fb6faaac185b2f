// Package image owns the card image file: parsing a SIZE argument,
// creating a sparse image with one Linux partition (MBR or GPT, written
// with github.com/diskfs/go-diskfs) holding a fresh ext2 (or journal-less
// ext4) filesystem made by the ext2 subpackage, and Inspect, which reads
// and validates an existing image's partition table and superblock.
//
// Create builds the image under a temporary name beside the target,
// flushes it and renames it into place, so a failure never leaves a
// partial image and never destroys an existing one. Inspect only reads
// the file (no ioctl, no loop device, no mount): the mount side calls it
// before attaching anything and tests its errors with errors.Is against
// ErrNoTable, ErrBadPartition, ErrNotExt, ErrTruncated, ErrUnclean,
// ErrFSErrors and ErrUnsupported.
//
// It does NOT attach loop devices, mount, repair filesystems, resize
// images or write the configuration file: those belong to loop/, mount/,
// e2fsck and config/.
package image
