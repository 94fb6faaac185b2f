package ext2

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestHasSuper(t *testing.T) {
	var got []int64
	for g := int64(0); g < 400; g++ {
		if hasSuper(g) {
			got = append(got, g)
		}
	}
	want := []int64{0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343}
	if len(got) != len(want) {
		t.Fatalf("sparse_super groups %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sparse_super groups %v, want %v", got, want)
		}
	}
}

func TestPlan(t *testing.T) {
	const MiB = 1 << 20
	cases := []struct {
		size                    int64
		bs, groups, ipg, blocks int64
	}{
		{3 * MiB, 1024, 1, 768, 3072},
		{7 * MiB, 1024, 1, 1792, 7168},
		{127 * MiB, 1024, 16, 2032, 130048},
		{511 * MiB, 1024, 64, 2048, 523264},
		{512 * MiB, 4096, 4, 8192, 131072},
		{4095 * MiB, 4096, 32, 8192, 1048320},
		// 8193 blocks + 60: the runt second group (60 blocks) is dropped.
		{8253 * 1024, 1024, 1, 2064, 8193},
	}
	for _, c := range cases {
		l, err := Plan(c.size, Options{})
		if err != nil {
			t.Errorf("Plan(%d): %v", c.size, err)
			continue
		}
		if l.BlockSize != c.bs || l.Groups != c.groups || l.InodesPerGroup != c.ipg || l.BlocksCount != c.blocks {
			t.Errorf("Plan(%d) = %+v; want bs %d groups %d ipg %d blocks %d", c.size, l, c.bs, c.groups, c.ipg, c.blocks)
		}
		if l.InodesPerGroup%8 != 0 || (l.InodesPerGroup*InodeSize)%l.BlockSize != 0 || l.InodesPerGroup > 8*l.BlockSize {
			t.Errorf("Plan(%d): %d inodes per group do not fill whole table blocks and the bitmap", c.size, l.InodesPerGroup)
		}
		var free int64
		for g := int64(0); g < l.Groups; g++ {
			free += l.groupBlocks(g) - l.usedBlocks(g)
		}
		if free != l.FreeBlocks || l.FreeInodes != l.InodesCount-11 || l.ReservedBlocks != l.BlocksCount/100 {
			t.Errorf("Plan(%d): counts %+v", c.size, l)
		}
	}
	for _, small := range []int64{0, 1024, 16 << 10} {
		if l, err := Plan(small, Options{}); !errors.Is(err, ErrTooSmall) {
			t.Errorf("Plan(%d) = %+v, %v; want ErrTooSmall", small, l, err)
		}
	}
	if _, err := Plan(32<<40, Options{BlockSize: 4096}); err == nil {
		t.Error("Plan(32 TiB) fit in 32-bit block numbers?")
	}
}

func TestSetBits(t *testing.T) {
	b := make([]byte, 4)
	setBits(b, 3, 21)
	if !bytes.Equal(b, []byte{0xf8, 0xff, 0x1f, 0}) {
		t.Errorf("setBits(3,21) = %x", b)
	}
}

// memWriter is a sparse in-memory WriterAt.
type memWriter struct{ b []byte }

func (m *memWriter) WriteAt(p []byte, off int64) (int, error) {
	copy(m.b[off:], p)
	return len(p), nil
}

func TestFormatSuperblockRoundTrip(t *testing.T) {
	for _, typ := range []string{TypeExt2, TypeExt4} {
		m := &memWriter{b: make([]byte, 16<<20)}
		uuid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
		now := time.Unix(1_800_000_000, 0)
		l, err := Format(m, 0, int64(len(m.b)), Options{Type: typ, Label: "roundtrip", UUID: uuid, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		sb, err := ParseSuperblock(m.b[SuperblockOffset:])
		if err != nil {
			t.Fatal(err)
		}
		if sb.Label() != "roundtrip" || sb.UUID != uuid || sb.Type() != typ || sb.State != StateValid ||
			sb.BlocksCount != uint64(l.BlocksCount) || uint64(sb.InodesCount) != uint64(l.InodesCount) ||
			sb.FreeBlocks != uint64(l.FreeBlocks) || sb.BlockSize() != l.BlockSize || sb.InodeSize != InodeSize ||
			sb.MkfsTime != uint32(now.Unix()) || sb.RevLevel != 1 || sb.FirstIno != 11 ||
			sb.Compat&CompatExtAttr == 0 || sb.RoCompat&RoCompatSparseSuper == 0 || sb.Incompat&IncompatFiletype == 0 ||
			sb.UnsupportedIncompat() != 0 || sb.UnsupportedRoCompat() != 0 {
			t.Errorf("%s: superblock %+v does not match layout %+v", typ, sb, l)
		}
		// The backup in group 1 differs only in s_block_group_nr.
		bk := m.b[(l.FirstDataBlock+l.BlocksPerGroup)*l.BlockSize:][:SuperblockSize]
		prim := m.b[SuperblockOffset:][:SuperblockSize]
		if bk[90] != 1 || !bytes.Equal(bk[:90], prim[:90]) || !bytes.Equal(bk[92:], prim[92:]) {
			t.Errorf("%s: backup superblock in group 1 differs from the primary", typ)
		}
	}
	if _, err := Format(&memWriter{b: make([]byte, 8<<20)}, 0, 8<<20, Options{Type: "xfs"}); err == nil {
		t.Error("Format accepted type xfs")
	}
	if _, err := Format(&memWriter{b: make([]byte, 8<<20)}, 0, 8<<20, Options{Label: "this label is too long"}); err == nil {
		t.Error("Format accepted a 22-byte label")
	}
}

func TestParseSuperblockRejects(t *testing.T) {
	if _, err := ParseSuperblock(make([]byte, 1024)); !errors.Is(err, ErrBadMagic) {
		t.Errorf("zeros: %v", err)
	}
	if _, err := ParseSuperblock(make([]byte, 100)); err == nil {
		t.Error("short buffer accepted")
	}
}
