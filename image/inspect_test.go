package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/image/ext2"
)

const testUUID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"

// newImage makes a card image in a test directory and returns its path.
func newImage(t *testing.T, size int64, table, fs string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "card.img")
	if _, err := Create(path, Options{Size: size, Table: table, FS: fs, UUID: testUUID, Label: "testcard"}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return path
}

func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func u16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// sb is the byte offset of superblock field off in a dos image.
func sb(off int64) int64 { return MiB + ext2.SuperblockOffset + off }

func TestInspectGood(t *testing.T) {
	for _, c := range []struct {
		table, fs string
		size      int64
	}{{TableDOS, "ext2", 8 * MiB}, {TableGPT, "ext2", 8 * MiB}, {TableDOS, "ext4", 600 * MiB}, {TableGPT, "ext4", 4 * MiB}} {
		path := newImage(t, c.size, c.table, c.fs)
		info, err := Inspect(path)
		if err != nil {
			t.Fatalf("%s/%s: Inspect: %v", c.table, c.fs, err)
		}
		abs, _ := filepath.Abs(path)
		want := Info{Path: abs, Size: c.size, Table: c.table, PartIndex: 1, PartStart: MiB, FSType: c.fs,
			UUID: testUUID, Label: "testcard", Clean: true}
		got := *info
		if got.Path != want.Path || got.Size != want.Size || got.Table != want.Table || got.PartIndex != 1 ||
			got.PartStart != MiB || got.FSType != want.FSType || got.UUID != want.UUID || got.Label != want.Label ||
			!got.Clean || got.HasErrors {
			t.Errorf("%s/%s: Info = %+v, want like %+v", c.table, c.fs, got, want)
		}
		l, _ := PlanLayout(c.size, c.table)
		if got.PartSize != l.PartSize || int64(got.BlocksCount)*got.BlockSize > got.PartSize ||
			got.FreeBlocks == 0 || got.FreeBlocks >= got.BlocksCount || got.FreeInodes != got.InodesCount-11 {
			t.Errorf("%s/%s: counts wrong: %+v", c.table, c.fs, got)
		}
		if got.DiskUsage <= 0 || got.DiskUsage > 2*MiB {
			t.Errorf("%s/%s: disk usage %d, want a sparse file", c.table, c.fs, got.DiskUsage)
		}
		if got.FsckTarget() != abs+"?offset=1048576" {
			t.Errorf("FsckTarget = %q", got.FsckTarget())
		}
	}
}

func TestInspectBad(t *testing.T) {
	type mut func(t *testing.T, path string)
	cases := []struct {
		name     string
		table    string
		mutate   mut
		sentinel error
		want     string // in the message
		hasInfo  bool
	}{
		{"truncated", TableDOS, func(t *testing.T, p string) { os.Truncate(p, 5*MiB) }, ErrTruncated, "ends at byte 8388608 but the file has 5242880", false},
		{"truncated into table", TableDOS, func(t *testing.T, p string) { os.Truncate(p, 300) }, ErrNoTable, "too short", false},
		{"empty file", TableDOS, func(t *testing.T, p string) { os.Truncate(p, 0) }, ErrNoTable, "", false},
		{"zeroed table", TableDOS, func(t *testing.T, p string) { patch(t, p, 0, make([]byte, 512)) }, ErrNoTable, "no MBR signature", false},
		{"zeroed superblock", TableDOS, func(t *testing.T, p string) { patch(t, p, sb(0), make([]byte, 1024)) }, ErrNotExt, "all zeros", false},
		{"vfat", TableDOS, func(t *testing.T, p string) {
			boot := make([]byte, 512)
			copy(boot[3:], "mkfs.fat")
			copy(boot[82:], "FAT32   ")
			patch(t, p, MiB, boot)
			patch(t, p, sb(0), make([]byte, 1024))
		}, ErrNotExt, "FAT", false},
		{"random bytes", TableDOS, func(t *testing.T, p string) {
			junk := make([]byte, 64<<10)
			rand.New(rand.NewSource(1)).Read(junk)
			patch(t, p, MiB, junk)
		}, ErrNotExt, "bad superblock magic", false},
		{"partition past end", TableDOS, func(t *testing.T, p string) {
			patch(t, p, 446+12, u32(uint32(100*MiB/512)))
		}, ErrTruncated, "ends at byte", false},
		{"overlap", TableDOS, func(t *testing.T, p string) {
			e := []byte{0, 0, 0, 0, 0x83, 0, 0, 0}
			e = append(e, u32(4096)...)
			e = append(e, u32(2048)...)
			patch(t, p, 446+16, e)
		}, ErrBadPartition, "overlap", false},
		{"starts in table", TableDOS, func(t *testing.T, p string) { patch(t, p, 446+8, u32(0)) }, ErrBadPartition, "inside the partition table", false},
		{"no linux partition", TableDOS, func(t *testing.T, p string) { patch(t, p, 446+4, []byte{0x0c}) }, ErrBadPartition, "no Linux partition", false},
		{"empty table", TableDOS, func(t *testing.T, p string) { patch(t, p, 446, make([]byte, 64)) }, ErrBadPartition, "partitions: none", false},
		{"bad boot flag", TableDOS, func(t *testing.T, p string) { patch(t, p, 446, []byte{0x12}) }, ErrBadPartition, "boot flag", false},
		{"fs larger than partition", TableDOS, func(t *testing.T, p string) { patch(t, p, 446+12, u32(8*1024)) }, ErrBadPartition, "larger than partition", false},
		{"unclean", TableDOS, func(t *testing.T, p string) { patch(t, p, sb(58), u16(0)) }, ErrUnclean, "e2fsck -p", true},
		{"needs recovery", TableDOS, func(t *testing.T, p string) { patch(t, p, sb(96), u32(ext2.IncompatFiletype|ext2.IncompatRecover)) }, ErrUnclean, "journal", true},
		{"error flag", TableDOS, func(t *testing.T, p string) { patch(t, p, sb(58), u16(ext2.StateValid|ext2.StateErrors)) }, ErrFSErrors, "e2fsck -f", true},
		{"unknown incompat", TableDOS, func(t *testing.T, p string) { patch(t, p, sb(96), u32(ext2.IncompatFiletype|0x40000000)) }, ErrUnsupported, "incompat 0x40000000", true},
		{"compression", TableDOS, func(t *testing.T, p string) { patch(t, p, sb(96), u32(ext2.IncompatFiletype|ext2.IncompatCompression)) }, ErrUnsupported, "compression", true},
		{"unknown ro_compat", TableDOS, func(t *testing.T, p string) { patch(t, p, sb(100), u32(0x80000000|ext2.RoCompatSparseSuper)) }, ErrUnsupported, "ro_compat 0x80000000", true},
		{"read-only feature", TableDOS, func(t *testing.T, p string) {
			patch(t, p, sb(100), u32(ext2.RoCompatReadonly|ext2.RoCompatSparseSuper))
		}, ErrUnsupported, "read-only", true},
		{"absurd block size", TableDOS, func(t *testing.T, p string) { patch(t, p, sb(24), u32(20)) }, ErrNotExt, "block size", false},
		{"inode count mismatch", TableDOS, func(t *testing.T, p string) { patch(t, p, sb(0), u32(12345)) }, ErrNotExt, "do not make", false},
		{"gpt header crc", TableGPT, func(t *testing.T, p string) { patch(t, p, 512+40, []byte{9}) }, ErrBadPartition, "header checksum", false},
		{"gpt entries crc", TableGPT, func(t *testing.T, p string) { patch(t, p, 1024+32, []byte{1}) }, ErrBadPartition, "entry array checksum", false},
		{"gpt missing header", TableGPT, func(t *testing.T, p string) { patch(t, p, 512, make([]byte, 512)) }, ErrBadPartition, "no GPT header", false},
		{"gpt past end", TableGPT, func(t *testing.T, p string) { os.Truncate(p, 6*MiB) }, ErrTruncated, "ends at byte", false},
		{"gpt not linux", TableGPT, func(t *testing.T, p string) {
			// Retype partition 1 as EFI system and fix both checksums.
			efi := []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
			rewriteGPT(t, p, func(arr []byte) { copy(arr[0:16], efi) })
		}, ErrBadPartition, "no Linux partition", false},
		{"gpt huge entry size", TableGPT, func(t *testing.T, p string) {
			rewriteGPTHeader(t, p, func(h []byte) { binary.LittleEndian.PutUint32(h[84:], 1<<20) })
		}, ErrBadPartition, "entry array", false},
		{"64bit absurd block count", TableDOS, func(t *testing.T, p string) {
			patch(t, p, sb(96), u32(ext2.IncompatFiletype|ext2.Incompat64Bit))
			patch(t, p, sb(336), u32(0xffffffff))
		}, ErrNotExt, "do not make", false},
		{"gpt outside usable", TableGPT, func(t *testing.T, p string) {
			rewriteGPT(t, p, func(arr []byte) { binary.LittleEndian.PutUint64(arr[40:], 1<<40) })
		}, ErrBadPartition, "outside the usable area", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := newImage(t, 8*MiB, c.table, "ext2")
			c.mutate(t, path)
			info, err := Inspect(path)
			if err == nil {
				t.Fatalf("Inspect accepted it: %+v", info)
			}
			if !errors.Is(err, c.sentinel) {
				t.Fatalf("error %q is not %v", err, c.sentinel)
			}
			var ie *Error
			if !errors.As(err, &ie) || ie.Path == "" || !strings.Contains(err.Error(), ie.Path) {
				t.Errorf("error %q is not an *image.Error naming the file", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line containing %q", msg, c.want)
			}
			for _, s := range sentinels {
				if s != c.sentinel && errors.Is(err, s) {
					t.Errorf("error %q also matches %v", msg, s)
				}
			}
			if (info != nil) != c.hasInfo {
				t.Errorf("info = %+v, want info present: %v", info, c.hasInfo)
			}
			if info != nil && (info.UUID != testUUID || (info.Clean && c.sentinel != ErrUnsupported)) {
				t.Errorf("partial info = %+v", info)
			}
		})
	}
}

// rewriteGPTHeader edits the primary GPT header and recomputes its
// checksum.
func rewriteGPTHeader(t *testing.T, path string, edit func(h []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := b[512:1024]
	edit(h)
	binary.LittleEndian.PutUint32(h[16:], 0)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	patch(t, path, 512, h)
}

// rewriteGPT edits the first GPT entry and recomputes both checksums of
// the primary header.
func rewriteGPT(t *testing.T, path string, edit func(entry []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	arr := b[1024 : 1024+128*128]
	edit(arr[0:128])
	h := b[512:1024]
	le.PutUint32(h[88:], crc32.ChecksumIEEE(arr))
	le.PutUint32(h[16:], 0)
	le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	patch(t, path, 0, b[:1024+128*128])
}

func TestInspectNotAFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Inspect(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Inspect(dir) = %v", err)
	}
	_, err := Inspect(filepath.Join(dir, "missing.img"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Inspect(missing) = %v", err)
	}
}

func TestInspectReaderBareFilesystem(t *testing.T) {
	// A filesystem without a partition table is not a card image.
	path := newImage(t, 8*MiB, TableDOS, "ext2")
	b, _ := os.ReadFile(path)
	bare := b[MiB:]
	if _, err := InspectReader(bytes.NewReader(bare), int64(len(bare)), "bare"); !errors.Is(err, ErrNoTable) {
		t.Errorf("bare filesystem: %v, want ErrNoTable", err)
	}
}
