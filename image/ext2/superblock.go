package ext2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"strings"
)

// On-disk constants.
const (
	Magic            = 0xEF53
	SuperblockOffset = 1024 // bytes from the start of the filesystem
	SuperblockSize   = 1024

	StateValid  = 0x0001 // cleanly unmounted
	StateErrors = 0x0002 // errors detected

	ErrorsContinue = 1

	descSize32 = 32 // group descriptor size without 64bit
)

// Feature bits (compat, incompat, ro_compat), as in e2fsprogs' ext2_fs.h.
const (
	CompatDirPrealloc  = 0x0001
	CompatImagicInodes = 0x0002
	CompatHasJournal   = 0x0004
	CompatExtAttr      = 0x0008
	CompatResizeInode  = 0x0010
	CompatDirIndex     = 0x0020
	CompatLazyBG       = 0x0040
	CompatExcludeBmap  = 0x0100
	CompatSparseSuper2 = 0x0200
	CompatFastCommit   = 0x0400
	CompatStableInodes = 0x0800
	CompatOrphanFile   = 0x1000

	IncompatCompression = 0x0001
	IncompatFiletype    = 0x0002
	IncompatRecover     = 0x0004
	IncompatJournalDev  = 0x0008
	IncompatMetaBG      = 0x0010
	IncompatExtents     = 0x0040
	Incompat64Bit       = 0x0080
	IncompatMMP         = 0x0100
	IncompatFlexBG      = 0x0200
	IncompatEAInode     = 0x0400
	IncompatDirData     = 0x1000
	IncompatCsumSeed    = 0x2000
	IncompatLargeDir    = 0x4000
	IncompatInlineData  = 0x8000
	IncompatEncrypt     = 0x10000
	IncompatCasefold    = 0x20000

	RoCompatSparseSuper   = 0x0001
	RoCompatLargeFile     = 0x0002
	RoCompatBtreeDir      = 0x0004
	RoCompatHugeFile      = 0x0008
	RoCompatGdtCsum       = 0x0010
	RoCompatDirNlink      = 0x0020
	RoCompatExtraIsize    = 0x0040
	RoCompatQuota         = 0x0100
	RoCompatBigalloc      = 0x0200
	RoCompatMetadataCsum  = 0x0400
	RoCompatReadonly      = 0x1000
	RoCompatProject       = 0x2000
	RoCompatSharedBlocks  = 0x4000
	RoCompatVerity        = 0x8000
	RoCompatOrphanPresent = 0x10000
)

// What each flavour may carry, after e2fsprogs' EXT2/EXT3_FEATURE_*_SUPP
// and the kernel's ext4 driver (which also mounts ext2 and ext3).
const (
	ext2Incompat = IncompatFiletype | IncompatMetaBG
	ext2RoCompat = RoCompatSparseSuper | RoCompatLargeFile | RoCompatBtreeDir
	ext3Incompat = ext2Incompat | IncompatRecover

	// KernelIncompat is every incompat feature the Linux ext4 driver can
	// mount read-write. Compression, dirdata and external journal devices
	// are not among them.
	KernelIncompat = IncompatFiletype | IncompatRecover | IncompatMetaBG | IncompatExtents | Incompat64Bit |
		IncompatMMP | IncompatFlexBG | IncompatEAInode | IncompatCsumSeed | IncompatLargeDir |
		IncompatInlineData | IncompatEncrypt | IncompatCasefold
	// KernelRoCompat is every ro_compat feature the driver can mount
	// read-write ("readonly" and "shared_blocks" force a read-only mount).
	KernelRoCompat = RoCompatSparseSuper | RoCompatLargeFile | RoCompatBtreeDir | RoCompatHugeFile |
		RoCompatGdtCsum | RoCompatDirNlink | RoCompatExtraIsize | RoCompatQuota | RoCompatBigalloc |
		RoCompatMetadataCsum | RoCompatProject | RoCompatVerity | RoCompatOrphanPresent
)

// Superblock is the decoded part of an ext2/3/4 superblock that ovpkg
// looks at.
type Superblock struct {
	InodesCount     uint32
	BlocksCount     uint64
	ReservedBlocks  uint64
	FreeBlocks      uint64
	FreeInodes      uint32
	FirstDataBlock  uint32
	LogBlockSize    uint32
	BlocksPerGroup  uint32
	InodesPerGroup  uint32
	MountTime       uint32
	WriteTime       uint32
	MountCount      uint16
	Magic           uint16
	State           uint16
	Errors          uint16
	RevLevel        uint32
	FirstIno        uint32
	InodeSize       uint16
	BlockGroupNr    uint16
	Compat          uint32
	Incompat        uint32
	RoCompat        uint32
	UUID            [16]byte
	VolumeName      [16]byte
	DescSize        uint16
	MkfsTime        uint32
	MinExtraIsize   uint16
	WantExtraIsize  uint16
	Flags           uint32
	ErrorCount      uint32
	ReservedGDT     uint16
	DefHashVersion  uint8
	HashSeed        [16]byte
	DefaultMountOps uint32
}

// BlockSize is the filesystem block size in bytes.
func (s *Superblock) BlockSize() int64 { return 1024 << s.LogBlockSize }

// Label is the volume name without trailing NULs.
func (s *Superblock) Label() string {
	return strings.TrimRight(string(s.VolumeName[:]), "\x00")
}

// Groups is the number of block groups the counts imply.
func (s *Superblock) Groups() uint64 {
	if s.BlocksPerGroup == 0 {
		return 0
	}
	return (s.BlocksCount - uint64(s.FirstDataBlock) + uint64(s.BlocksPerGroup) - 1) / uint64(s.BlocksPerGroup)
}

// Type names the flavour the way blkid does: ext2 without a journal and
// without ext3/ext4-only features, ext3 with a journal and nothing newer,
// ext4 otherwise.
func (s *Superblock) Type() string {
	switch {
	case s.Compat&CompatHasJournal == 0 && s.Incompat&^ext2Incompat == 0 && s.RoCompat&^ext2RoCompat == 0:
		return "ext2"
	case s.Compat&CompatHasJournal != 0 && s.Incompat&^ext3Incompat == 0 && s.RoCompat&^ext2RoCompat == 0:
		return "ext3"
	}
	return "ext4"
}

// UnsupportedIncompat returns the incompat bits the kernel cannot mount
// read-write.
func (s *Superblock) UnsupportedIncompat() uint32 { return s.Incompat &^ KernelIncompat }

// UnsupportedRoCompat returns the ro_compat bits that prevent a
// read-write mount.
func (s *Superblock) UnsupportedRoCompat() uint32 { return s.RoCompat &^ KernelRoCompat }

// ErrBadMagic means the bytes are not an ext2/3/4 superblock at all.
var ErrBadMagic = errors.New("no ext2/ext3/ext4 superblock (bad magic)")

// ParseSuperblock decodes a 1024-byte superblock and checks that its
// geometry is self-consistent. It does not judge state or features.
func ParseSuperblock(b []byte) (*Superblock, error) {
	if len(b) < SuperblockSize {
		return nil, fmt.Errorf("superblock: short read (%d bytes)", len(b))
	}
	le := binary.LittleEndian
	s := &Superblock{
		InodesCount:     le.Uint32(b[0:]),
		BlocksCount:     uint64(le.Uint32(b[4:])),
		ReservedBlocks:  uint64(le.Uint32(b[8:])),
		FreeBlocks:      uint64(le.Uint32(b[12:])),
		FreeInodes:      le.Uint32(b[16:]),
		FirstDataBlock:  le.Uint32(b[20:]),
		LogBlockSize:    le.Uint32(b[24:]),
		BlocksPerGroup:  le.Uint32(b[32:]),
		InodesPerGroup:  le.Uint32(b[40:]),
		MountTime:       le.Uint32(b[44:]),
		WriteTime:       le.Uint32(b[48:]),
		MountCount:      le.Uint16(b[52:]),
		Magic:           le.Uint16(b[56:]),
		State:           le.Uint16(b[58:]),
		Errors:          le.Uint16(b[60:]),
		RevLevel:        le.Uint32(b[76:]),
		FirstIno:        11,
		InodeSize:       128,
		BlockGroupNr:    le.Uint16(b[90:]),
		ReservedGDT:     le.Uint16(b[206:]),
		DefHashVersion:  b[252],
		DescSize:        le.Uint16(b[254:]),
		DefaultMountOps: le.Uint32(b[256:]),
		MkfsTime:        le.Uint32(b[264:]),
		MinExtraIsize:   le.Uint16(b[348:]),
		WantExtraIsize:  le.Uint16(b[350:]),
		Flags:           le.Uint32(b[352:]),
		ErrorCount:      le.Uint32(b[404:]),
	}
	copy(s.UUID[:], b[104:120])
	copy(s.VolumeName[:], b[120:136])
	copy(s.HashSeed[:], b[236:252])
	if s.Magic != Magic {
		return nil, ErrBadMagic
	}
	if s.RevLevel > 1 {
		return nil, fmt.Errorf("superblock: unknown revision %d", s.RevLevel)
	}
	if s.RevLevel == 1 {
		s.FirstIno = le.Uint32(b[84:])
		s.InodeSize = le.Uint16(b[88:])
		s.Compat = le.Uint32(b[92:])
		s.Incompat = le.Uint32(b[96:])
		s.RoCompat = le.Uint32(b[100:])
	}
	if s.Incompat&Incompat64Bit != 0 {
		s.BlocksCount |= uint64(le.Uint32(b[336:])) << 32
		s.ReservedBlocks |= uint64(le.Uint32(b[340:])) << 32
		s.FreeBlocks |= uint64(le.Uint32(b[344:])) << 32
	}
	switch {
	case s.LogBlockSize > 6:
		return nil, fmt.Errorf("superblock: block size 2^%d KiB is not sane", s.LogBlockSize)
	case s.BlocksCount == 0 || s.InodesCount == 0 || s.BlocksPerGroup == 0 || s.InodesPerGroup == 0:
		return nil, errors.New("superblock: zero block or inode count")
	case s.BlocksPerGroup > 8*uint32(s.BlockSize()) && s.RoCompat&RoCompatBigalloc == 0:
		return nil, fmt.Errorf("superblock: %d blocks per group exceed the bitmap", s.BlocksPerGroup)
	case s.InodesPerGroup > 8*uint32(s.BlockSize()):
		return nil, fmt.Errorf("superblock: %d inodes per group exceed the bitmap", s.InodesPerGroup)
	case s.FirstDataBlock != 0 && !(s.FirstDataBlock == 1 && s.BlockSize() == 1024):
		return nil, fmt.Errorf("superblock: first data block %d does not fit block size %d", s.FirstDataBlock, s.BlockSize())
	case s.BlocksCount <= uint64(s.FirstDataBlock):
		return nil, errors.New("superblock: no blocks after the first data block")
	case s.InodeSize < 128 || s.InodeSize&(s.InodeSize-1) != 0 || int64(s.InodeSize) > s.BlockSize():
		return nil, fmt.Errorf("superblock: inode size %d is not sane", s.InodeSize)
	case s.FreeBlocks > s.BlocksCount || s.FreeInodes > s.InodesCount:
		return nil, errors.New("superblock: free counts exceed totals")
	}
	if hi, n := bits.Mul64(s.Groups(), uint64(s.InodesPerGroup)); s.RoCompat&RoCompatBigalloc == 0 && (hi != 0 || n != uint64(s.InodesCount)) {
		return nil, fmt.Errorf("superblock: %d groups of %d inodes do not make %d inodes",
			s.Groups(), s.InodesPerGroup, s.InodesCount)
	}
	return s, nil
}

// MarkErrors sets the "errors detected" state bit in the raw superblock
// b (1024 bytes, as read from the device), as the kernel does when it
// finds damage, and updates the superblock checksum when the filesystem
// has metadata_csum. e2fsck then checks the whole filesystem before
// anything mounts it again (and clears the bit when it is consistent).
func MarkErrors(b []byte) error {
	if _, err := ParseSuperblock(b); err != nil {
		return err
	}
	le := binary.LittleEndian
	le.PutUint16(b[58:], le.Uint16(b[58:])|StateErrors)
	if le.Uint32(b[76:]) >= 1 && le.Uint32(b[100:])&RoCompatMetadataCsum != 0 {
		// s_checksum (offset 0x3FC) is crc32c(~0, superblock up to it),
		// without the final inversion (e2fsprogs ext2fs_superblock_csum).
		le.PutUint32(b[0x3FC:], ^crc32.Checksum(b[:0x3FC], crc32.MakeTable(crc32.Castagnoli)))
	}
	return nil
}
