package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ovpkg/ovpkg/image/ext2"
)

// Info describes a card image: the file, its partition and filesystem.
type Info struct {
	Path        string `json:"path"`       // absolute path of the image
	Size        int64  `json:"size"`       // file size in bytes
	DiskUsage   int64  `json:"disk_usage"` // bytes the file occupies on disk (st_blocks*512; 0 for devices)
	Table       string `json:"table"`      // "dos" or "gpt"
	PartIndex   int    `json:"part_index"` // 1-based index of the partition used
	PartStart   int64  `json:"part_start"` // byte offset of the partition in the file
	PartSize    int64  `json:"part_size"`  // partition size in bytes
	FSType      string `json:"fs_type"`    // "ext2", "ext3" or "ext4"
	UUID        string `json:"uuid"`       // filesystem UUID, lowercase canonical
	Label       string `json:"label"`      // volume label
	Clean       bool   `json:"clean"`      // cleanly unmounted and no errors recorded
	HasErrors   bool   `json:"has_errors"` // the kernel recorded errors
	BlockSize   int64  `json:"block_size"`
	BlocksCount uint64 `json:"blocks_count"`
	FreeBlocks  uint64 `json:"free_blocks"`
	InodesCount uint64 `json:"inodes_count"`
	FreeInodes  uint64 `json:"free_inodes"`
	Incompat    uint32 `json:"incompat"`  // incompat feature bits
	RoCompat    uint32 `json:"ro_compat"` // ro_compat feature bits
}

// FsckTarget names the filesystem for e2fsck without a loop device:
// e2fsck -p 'IMAGE?offset=N' checks the partition inside the file.
func (i *Info) FsckTarget() string { return fmt.Sprintf("%s?offset=%d", i.Path, i.PartStart) }

// Inspect reads and validates the image at path: the partition table
// (MBR or GPT: entries inside the file, no overlap, a Linux partition;
// the first Linux one is used) and the ext2/3/4 superblock in it (magic,
// geometry, size within the partition, features the kernel can mount
// read-write, clean state, no recorded errors). It only reads the file:
// no ioctl, no loop device.
//
// When the structure is readable but the filesystem is refused
// (ErrUnsupported, ErrFSErrors, ErrUnclean) the returned Info is filled
// in as well, so a caller can offer e2fsck or honour --force. Note that a
// filesystem mounted read-write right now is also "not clean".
func Inspect(path string) (*Info, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &Error{Path: path, Msg: "cannot resolve path", Err: err}
	}
	f, err := os.Open(abs)
	if err != nil {
		msg := "cannot open"
		if errors.Is(err, os.ErrNotExist) {
			msg = "does not exist (make one with mkoverlay, or fix SD_ROOTFS in the config)"
		}
		return nil, &Error{Path: abs, Msg: msg, Err: err, quiet: msg != "cannot open"}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, &Error{Path: abs, Msg: "cannot stat", Err: err}
	}
	if st.IsDir() {
		return nil, &Error{Path: abs, Msg: "is a directory, not an image file", Err: syscall.EISDIR, quiet: true}
	}
	if !st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0 {
		return nil, &Error{Path: abs, Msg: "is neither a regular file nor a block device"}
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, &Error{Path: abs, Msg: "cannot find the size", Err: err}
	}
	info, err := InspectReader(f, size, abs)
	if info != nil && st.Mode().IsRegular() {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			info.DiskUsage = sys.Blocks * 512
		}
	}
	return info, err
}

// InspectReader is Inspect on any ReaderAt of size bytes; name is used
// as Info.Path and in messages.
func InspectReader(r io.ReaderAt, size int64, name string) (*Info, error) {
	table, parts, perr := readTable(r, size)
	if perr != nil {
		perr.Path = name
		return nil, perr
	}
	p, perr := checkParts(table, parts, size)
	if perr != nil {
		perr.Path = name
		return nil, perr
	}
	info := &Info{Path: name, Size: size, Table: table, PartIndex: p.index, PartStart: p.start, PartSize: p.size}
	fail := func(sentinel error, format string, a ...any) error {
		return &Error{Path: name, Msg: fmt.Sprintf(format, a...), Err: sentinel}
	}
	if p.size < ext2.SuperblockOffset+ext2.SuperblockSize {
		return nil, fail(ErrNotExt, "partition %d (%d bytes) is too small for a filesystem", p.index, p.size)
	}
	b := make([]byte, ext2.SuperblockSize)
	if _, err := r.ReadAt(b, p.start+ext2.SuperblockOffset); err != nil {
		return nil, &Error{Path: name, Msg: fmt.Sprintf("cannot read the superblock of partition %d", p.index), Err: err}
	}
	sb, err := ext2.ParseSuperblock(b)
	if err != nil {
		if errors.Is(err, ext2.ErrBadMagic) {
			return nil, fail(ErrNotExt, "partition %d holds no ext2/ext3/ext4 filesystem (%s); make a new card with mkoverlay",
				p.index, guessContent(r, p.start, b))
		}
		return nil, fail(ErrNotExt, "partition %d: %v (damaged filesystem; e2fsck may repair it)", p.index, err)
	}
	bs := sb.BlockSize()
	info.FSType = sb.Type()
	info.UUID = formatUUID(sb.UUID)
	info.Label = sb.Label()
	info.BlockSize = bs
	info.BlocksCount = sb.BlocksCount
	info.FreeBlocks = sb.FreeBlocks
	info.InodesCount = uint64(sb.InodesCount)
	info.FreeInodes = uint64(sb.FreeInodes)
	info.Incompat, info.RoCompat = sb.Incompat, sb.RoCompat
	info.HasErrors = sb.State&ext2.StateErrors != 0
	unclean := sb.State&ext2.StateValid == 0 || sb.Incompat&ext2.IncompatRecover != 0 || sb.RoCompat&ext2.RoCompatOrphanPresent != 0
	info.Clean = !unclean && !info.HasErrors
	if sb.BlocksCount > uint64(p.size/bs) {
		return nil, fail(ErrBadPartition, "the filesystem (%d blocks of %d bytes) is larger than partition %d (%d bytes)",
			sb.BlocksCount, bs, p.index, p.size)
	}
	if bad, badRo := sb.UnsupportedIncompat(), sb.UnsupportedRoCompat(); bad != 0 || badRo != 0 {
		return info, fail(ErrUnsupported, "the filesystem uses features the kernel cannot mount read-write (%s); use a card made by mkoverlay",
			featureNames(bad, badRo))
	}
	if info.HasErrors {
		return info, fail(ErrFSErrors, "the kernel recorded errors on this filesystem; repair it with: e2fsck -f '%s'", info.FsckTarget())
	}
	if unclean {
		why := "not cleanly unmounted (card pulled, or mounted right now)"
		if sb.Incompat&ext2.IncompatRecover != 0 {
			why = "its journal needs recovery"
		} else if sb.RoCompat&ext2.RoCompatOrphanPresent != 0 {
			why = "it has orphan inodes to clean up"
		}
		return info, fail(ErrUnclean, "filesystem %s; check it with: e2fsck -p '%s'", why, info.FsckTarget())
	}
	return info, nil
}

var incompatNames = map[uint32]string{
	ext2.IncompatCompression: "compression", ext2.IncompatJournalDev: "journal_dev", ext2.IncompatDirData: "dirdata",
}

var roCompatNames = map[uint32]string{
	ext2.RoCompatReadonly: "read-only", ext2.RoCompatSharedBlocks: "shared_blocks",
}

func featureNames(incompat, rocompat uint32) string {
	var names []string
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if incompat&bit != 0 {
			n, ok := incompatNames[bit]
			if !ok {
				n = fmt.Sprintf("incompat 0x%x", bit)
			}
			names = append(names, n)
		}
	}
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if rocompat&bit != 0 {
			n, ok := roCompatNames[bit]
			if !ok {
				n = fmt.Sprintf("ro_compat 0x%x", bit)
			}
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// guessContent says what a partition without an ext superblock holds,
// for the error message.
func guessContent(r io.ReaderAt, start int64, sb []byte) string {
	boot := make([]byte, 512)
	r.ReadAt(boot, start)
	switch {
	case bytes.Equal(boot[82:87], []byte("FAT32")), bytes.Equal(boot[54:59], []byte("FAT16")),
		bytes.Equal(boot[54:59], []byte("FAT12")):
		return "it looks like FAT (vfat)"
	case bytes.Equal(boot[3:8], []byte("NTFS ")):
		return "it looks like NTFS"
	case bytes.Equal(boot[3:8], []byte("EXFAT")):
		return "it looks like exFAT"
	case bytes.Count(sb, []byte{0}) == len(sb):
		return "the superblock is all zeros"
	}
	return fmt.Sprintf("bad superblock magic 0x%02x%02x at byte %d", sb[57], sb[56], start+ext2.SuperblockOffset+56)
}
