package ext2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Flavours Format can write.
const (
	TypeExt2 = "ext2"
	TypeExt4 = "ext4" // ext2 layout plus extents, huge_file, dir_nlink, extra_isize; no journal
)

// Size thresholds and defaults (after mke2fs.conf's "small" and default
// types).
const (
	SmallLimit        = 512 << 20 // below this: 1 KiB blocks, one inode per 4 KiB
	smallBlockSize    = 1024
	smallInodeRatio   = 4096
	defaultBlockSize  = 4096
	defaultInodeRatio = 16384
	InodeSize         = 256
	extraIsize        = 32 // i_extra_isize of the inodes written (nanosecond times, crtime)
	firstIno          = 11
	rootIno           = 2
	lostFoundIno      = 11
	lostFoundBytes    = 16 << 10 // mke2fs makes lost+found 16 KiB (at most 12 direct blocks)
	minGroupSlack     = 50       // mke2fs drops a last group with fewer spare blocks than this
	ReservedPercent   = 1        // blocks reserved for root, in percent
	MaxBlocks         = 1<<32 - 1
)

// Options control Format.
type Options struct {
	Type       string    // TypeExt2 (default) or TypeExt4
	Label      string    // at most 16 bytes
	UUID       [16]byte  // filesystem UUID
	HashSeed   [16]byte  // dir_index hash seed; should be random
	Now        time.Time // creation time; zero means time.Now()
	BlockSize  int       // 0: by size (1024 below SmallLimit, else 4096)
	InodeRatio int       // bytes per inode; 0: by size
}

// Layout is the geometry Format chose.
type Layout struct {
	BlockSize        int64
	FirstDataBlock   int64
	BlocksPerGroup   int64
	InodesPerGroup   int64
	Groups           int64
	BlocksCount      int64
	InodesCount      int64
	GDTBlocks        int64
	InodeTableBlocks int64
	LostFoundBlocks  int64
	ReservedBlocks   int64
	FreeBlocks       int64
	FreeInodes       int64
}

// hasSuper reports whether group g holds a superblock backup under
// sparse_super: groups 0, 1 and powers of 3, 5 and 7.
func hasSuper(g int64) bool {
	if g <= 1 {
		return true
	}
	for _, b := range []int64{3, 5, 7} {
		n := b
		for n < g {
			n *= b
		}
		if n == g {
			return true
		}
	}
	return false
}

// groupStart returns the first block of group g.
func (l *Layout) groupStart(g int64) int64 { return l.FirstDataBlock + g*l.BlocksPerGroup }

// groupBlocks returns how many blocks group g spans.
func (l *Layout) groupBlocks(g int64) int64 {
	n := l.BlocksCount - l.groupStart(g)
	if n > l.BlocksPerGroup {
		n = l.BlocksPerGroup
	}
	return n
}

// metaBlocks returns the blocks at the start of group g taken by the
// superblock copy, descriptors, the two bitmaps and the inode table.
func (l *Layout) metaBlocks(g int64) int64 {
	n := 2 + l.InodeTableBlocks
	if hasSuper(g) {
		n += 1 + l.GDTBlocks
	}
	return n
}

// usedBlocks is metaBlocks plus, in group 0, the root directory and
// lost+found. Used blocks are always the first ones of the group.
func (l *Layout) usedBlocks(g int64) int64 {
	n := l.metaBlocks(g)
	if g == 0 {
		n += 1 + l.LostFoundBlocks
	}
	return n
}

// ErrTooSmall means the region cannot hold even one block group.
var ErrTooSmall = errors.New("too small for an ext2 filesystem")

// Plan computes the layout for a filesystem of size bytes.
func Plan(size int64, opt Options) (*Layout, error) {
	bs := int64(opt.BlockSize)
	ratio := int64(opt.InodeRatio)
	if bs == 0 {
		bs = defaultBlockSize
		if size < SmallLimit {
			bs = smallBlockSize
		}
	}
	if ratio == 0 {
		ratio = defaultInodeRatio
		if size < SmallLimit {
			ratio = smallInodeRatio
		}
	}
	if bs != 1024 && bs != 2048 && bs != 4096 {
		return nil, fmt.Errorf("block size %d not supported (1024, 2048 or 4096)", bs)
	}
	if ratio < bs {
		ratio = bs
	}
	l := &Layout{BlockSize: bs, BlocksPerGroup: 8 * bs}
	if bs == 1024 {
		l.FirstDataBlock = 1
	}
	l.LostFoundBlocks = min(max(lostFoundBytes/bs, 2), 12)
	l.BlocksCount = size / bs
	if l.BlocksCount > MaxBlocks {
		return nil, fmt.Errorf("%d blocks of %d bytes exceed the 32-bit block count", l.BlocksCount, bs)
	}
	inodesWanted := size / ratio
	perBlock := bs / InodeSize
	for {
		if l.BlocksCount <= l.FirstDataBlock {
			return nil, ErrTooSmall
		}
		l.Groups = (l.BlocksCount - l.FirstDataBlock + l.BlocksPerGroup - 1) / l.BlocksPerGroup
		ipg := (inodesWanted + l.Groups - 1) / l.Groups
		ipg = max(ipg, 16)
		step := max(perBlock, 8)
		ipg = (ipg + step - 1) / step * step
		ipg = min(ipg, 8*bs)
		l.InodesPerGroup = ipg
		l.InodeTableBlocks = ipg * InodeSize / bs
		l.GDTBlocks = (l.Groups*descSize32 + bs - 1) / bs
		last := l.Groups - 1
		if l.groupBlocks(last) < l.usedBlocks(last)+minGroupSlack {
			if l.Groups == 1 {
				if l.groupBlocks(0) < l.usedBlocks(0)+1 {
					return nil, ErrTooSmall
				}
			} else {
				// Drop the runt group, as mke2fs does.
				l.BlocksCount = l.groupStart(last)
				continue
			}
		}
		break
	}
	l.InodesCount = l.Groups * l.InodesPerGroup
	if l.InodesCount > 1<<32-1 {
		return nil, errors.New("too many inodes")
	}
	for g := int64(0); g < l.Groups; g++ {
		l.FreeBlocks += l.groupBlocks(g) - l.usedBlocks(g)
	}
	l.FreeInodes = l.InodesCount - (firstIno)
	l.ReservedBlocks = l.BlocksCount * ReservedPercent / 100
	return l, nil
}

// Format writes a new filesystem into w at [off, off+size). The region
// must read as zeros (a freshly truncated file): only metadata is written.
func Format(w io.WriterAt, off, size int64, opt Options) (*Layout, error) {
	if opt.Type == "" {
		opt.Type = TypeExt2
	}
	if opt.Type != TypeExt2 && opt.Type != TypeExt4 {
		return nil, fmt.Errorf("filesystem type %q not supported (ext2 or ext4)", opt.Type)
	}
	if len(opt.Label) > 16 {
		return nil, fmt.Errorf("label %q is longer than 16 bytes", opt.Label)
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	l, err := Plan(size, opt)
	if err != nil {
		return nil, err
	}
	fw := &formatter{w: w, off: off, l: l, opt: opt, now: uint32(opt.Now.Unix())}
	if err := fw.write(); err != nil {
		return nil, err
	}
	return l, nil
}

type formatter struct {
	w   io.WriterAt
	off int64
	l   *Layout
	opt Options
	now uint32
}

func (f *formatter) writeAt(b []byte, block int64, what string) error {
	if _, err := f.w.WriteAt(b, f.off+block*f.l.BlockSize); err != nil {
		return fmt.Errorf("writing %s: %w", what, err)
	}
	return nil
}

func (f *formatter) write() error {
	l := f.l
	bs := l.BlockSize
	gdt := f.descriptors()
	sb := f.superblock()
	for g := int64(0); g < l.Groups; g++ {
		start := l.groupStart(g)
		// One write per group: [superblock][descriptors] when the group
		// keeps a copy, then the block and inode bitmaps.
		var buf []byte
		first := start
		if hasSuper(g) {
			buf = make([]byte, (1+l.GDTBlocks+2)*bs)
			binary.LittleEndian.PutUint16(sb[90:], uint16(g))
			if g == 0 && bs > SuperblockOffset {
				copy(buf[SuperblockOffset:], sb) // block 0 also holds the boot sector area
			} else {
				copy(buf, sb)
			}
			copy(buf[bs:], gdt)
		} else {
			buf = make([]byte, 2*bs)
		}
		bmap := buf[len(buf)-int(2*bs):]
		f.blockBitmap(bmap[:bs], g)
		f.inodeBitmap(bmap[bs:], g)
		if err := f.writeAt(buf, first, fmt.Sprintf("group %d metadata", g)); err != nil {
			return err
		}
	}
	// Inodes 1..11 in group 0's inode table, then the root directory and
	// lost+found blocks right after the table.
	if err := f.writeAt(f.inodes(), l.FirstDataBlock+l.metaBlocks(0)-l.InodeTableBlocks, "inode table"); err != nil {
		return err
	}
	return f.writeAt(f.dirBlocks(), f.rootBlock(), "root directory")
}

func (f *formatter) rootBlock() int64 { return f.l.FirstDataBlock + f.l.metaBlocks(0) }

func setBits(b []byte, from, to int64) {
	for i := from; i < to; i++ {
		if i&7 == 0 && i+8 <= to {
			b[i>>3] = 0xff
			i += 7
			continue
		}
		b[i>>3] |= 1 << (i & 7)
	}
}

func (f *formatter) blockBitmap(b []byte, g int64) {
	setBits(b, 0, f.l.usedBlocks(g))
	setBits(b, f.l.groupBlocks(g), 8*f.l.BlockSize) // padding past the group's end
}

func (f *formatter) inodeBitmap(b []byte, g int64) {
	if g == 0 {
		setBits(b, 0, firstIno)
	}
	setBits(b, f.l.InodesPerGroup, 8*f.l.BlockSize)
}

func (f *formatter) descriptors() []byte {
	l := f.l
	b := make([]byte, l.GDTBlocks*l.BlockSize)
	le := binary.LittleEndian
	for g := int64(0); g < l.Groups; g++ {
		d := b[g*descSize32:]
		bb := l.groupStart(g) + l.metaBlocks(g) - l.InodeTableBlocks - 2
		le.PutUint32(d[0:], uint32(bb))
		le.PutUint32(d[4:], uint32(bb+1))
		le.PutUint32(d[8:], uint32(bb+2))
		le.PutUint16(d[12:], uint16(l.groupBlocks(g)-l.usedBlocks(g)))
		free := l.InodesPerGroup
		dirs := 0
		if g == 0 {
			free -= firstIno
			dirs = 2
		}
		le.PutUint16(d[14:], uint16(free))
		le.PutUint16(d[16:], uint16(dirs))
	}
	return b
}

func (f *formatter) features() (compat, incompat, rocompat uint32) {
	compat = CompatExtAttr | CompatDirIndex
	incompat = IncompatFiletype
	rocompat = RoCompatSparseSuper | RoCompatLargeFile
	if f.opt.Type == TypeExt4 {
		incompat |= IncompatExtents
		rocompat |= RoCompatHugeFile | RoCompatDirNlink | RoCompatExtraIsize
	}
	return
}

func (f *formatter) superblock() []byte {
	l := f.l
	b := make([]byte, SuperblockSize)
	le := binary.LittleEndian
	logBS := uint32(0)
	for 1024<<logBS < l.BlockSize {
		logBS++
	}
	le.PutUint32(b[0:], uint32(l.InodesCount))
	le.PutUint32(b[4:], uint32(l.BlocksCount))
	le.PutUint32(b[8:], uint32(l.ReservedBlocks))
	le.PutUint32(b[12:], uint32(l.FreeBlocks))
	le.PutUint32(b[16:], uint32(l.FreeInodes))
	le.PutUint32(b[20:], uint32(l.FirstDataBlock))
	le.PutUint32(b[24:], logBS)
	le.PutUint32(b[28:], logBS) // s_log_cluster_size
	le.PutUint32(b[32:], uint32(l.BlocksPerGroup))
	le.PutUint32(b[36:], uint32(l.BlocksPerGroup)) // s_clusters_per_group
	le.PutUint32(b[40:], uint32(l.InodesPerGroup))
	le.PutUint32(b[48:], f.now)  // s_wtime
	le.PutUint16(b[54:], 0xffff) // s_max_mnt_count = -1: no mount-count checks
	le.PutUint16(b[56:], Magic)
	le.PutUint16(b[58:], StateValid)
	le.PutUint16(b[60:], ErrorsContinue)
	le.PutUint32(b[64:], f.now) // s_lastcheck
	le.PutUint32(b[76:], 1)     // s_rev_level: dynamic
	le.PutUint32(b[84:], firstIno)
	le.PutUint16(b[88:], InodeSize)
	compat, incompat, rocompat := f.features()
	le.PutUint32(b[92:], compat)
	le.PutUint32(b[96:], incompat)
	le.PutUint32(b[100:], rocompat)
	copy(b[104:120], f.opt.UUID[:])
	copy(b[120:136], f.opt.Label)
	copy(b[236:252], f.opt.HashSeed[:])
	b[252] = 1                    // s_def_hash_version: half_md4
	le.PutUint32(b[256:], 0x000c) // s_default_mount_opts: user_xattr, acl
	le.PutUint32(b[264:], f.now)  // s_mkfs_time
	le.PutUint16(b[348:], extraIsize)
	le.PutUint16(b[350:], extraIsize)
	le.PutUint32(b[352:], 0x0001) // s_flags: signed directory hash (as mke2fs on x86)
	return b
}

// inodes returns inodes 1..11 of the inode table.
func (f *formatter) inodes() []byte {
	b := make([]byte, firstIno*InodeSize)
	root := f.rootBlock()
	f.dirInode(b[(rootIno-1)*InodeSize:], 0o40755, 3, root, 1)
	f.dirInode(b[(lostFoundIno-1)*InodeSize:], 0o40700, 2, root+1, f.l.LostFoundBlocks)
	return b
}

func (f *formatter) dirInode(b []byte, mode uint16, links uint16, first, n int64) {
	le := binary.LittleEndian
	bs := f.l.BlockSize
	le.PutUint16(b[0:], mode)
	le.PutUint32(b[4:], uint32(n*bs))
	le.PutUint32(b[8:], f.now)
	le.PutUint32(b[12:], f.now)
	le.PutUint32(b[16:], f.now)
	le.PutUint16(b[26:], links)
	le.PutUint32(b[28:], uint32(n*bs/512))
	if f.opt.Type == TypeExt4 {
		le.PutUint32(b[32:], 0x80000) // EXT4_EXTENTS_FL
		e := b[40:100]
		le.PutUint16(e[0:], 0xf30a) // extent header magic
		le.PutUint16(e[2:], 1)      // entries
		le.PutUint16(e[4:], 4)      // max entries in i_block
		le.PutUint16(e[6:], 0)      // depth: leaf
		le.PutUint32(e[12:], 0)     // first logical block
		le.PutUint16(e[16:], uint16(n))
		le.PutUint16(e[18:], uint16(first>>32))
		le.PutUint32(e[20:], uint32(first))
	} else {
		for i := int64(0); i < n; i++ {
			le.PutUint32(b[40+4*i:], uint32(first+i))
		}
	}
	le.PutUint16(b[128:], extraIsize)
	le.PutUint32(b[144:], f.now) // i_crtime
}

// dirent writes one directory entry and returns its length.
func dirent(b []byte, ino uint32, recLen int, name string, ftype byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], ino)
	le.PutUint16(b[4:], uint16(recLen))
	b[6] = byte(len(name))
	b[7] = ftype
	copy(b[8:], name)
}

const ftDir = 2

// dirBlocks returns the root directory block followed by lost+found's.
func (f *formatter) dirBlocks() []byte {
	bs := int(f.l.BlockSize)
	b := make([]byte, (1+f.l.LostFoundBlocks)*int64(bs))
	dirent(b[0:], rootIno, 12, ".", ftDir)
	dirent(b[12:], rootIno, 12, "..", ftDir)
	dirent(b[24:], lostFoundIno, bs-24, "lost+found", ftDir)
	lf := b[bs:]
	dirent(lf[0:], lostFoundIno, 12, ".", ftDir)
	dirent(lf[12:], rootIno, bs-12, "..", ftDir)
	for i := 1; i < int(f.l.LostFoundBlocks); i++ {
		dirent(lf[i*bs:], 0, bs, "", 0)
	}
	return b
}
