package image

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// TestImageWithTools checks images made by Create with independent
// tools: sfdisk for the table, blkid and dumpe2fs for the filesystem,
// e2fsck -fn for consistency, st_blocks for sparseness.
func TestImageWithTools(t *testing.T) {
	nstest.Need(t, "sfdisk", "blkid", "dumpe2fs", "e2fsck")
	cases := []struct {
		size      int64
		table, fs string
		blockSize int
	}{
		{8 * MiB, TableDOS, "ext2", 1024},
		{128 * MiB, TableDOS, "ext2", 1024},
		{4 * GiB, TableDOS, "ext2", 4096},
		{64 * GiB, TableDOS, "ext2", 4096},
		{8 * MiB, TableGPT, "ext2", 1024},
		{4 * GiB, TableGPT, "ext2", 4096},
		{64 * GiB, TableGPT, "ext4", 4096},
		{128 * MiB, TableDOS, "ext4", 1024},
	}
	for _, c := range cases {
		c := c
		t.Run(fmt.Sprintf("%s-%s-%s", FormatSize(c.size), c.table, c.fs), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "card.img")
			info, err := Create(path, Options{Size: c.size, Table: c.table, FS: c.fs, Label: "toolcheck", UUID: testUUID})
			if err != nil {
				t.Fatal(err)
			}
			layout, _ := PlanLayout(c.size, c.table)

			// Partition table, as sfdisk reads it.
			out, err := exec.Command("sfdisk", "-J", path).Output()
			if err != nil {
				t.Fatalf("sfdisk -J: %v", err)
			}
			var sf struct {
				PartitionTable struct {
					Label      string `json:"label"`
					Partitions []struct {
						Start int64  `json:"start"`
						Size  int64  `json:"size"`
						Type  string `json:"type"`
					} `json:"partitions"`
				} `json:"partitiontable"`
			}
			nstest.JSON(t, string(out), &sf)
			pt := sf.PartitionTable
			wantType := "83"
			if c.table == TableGPT {
				wantType = string(LinuxFilesystemGUID)
			}
			if pt.Label != c.table || len(pt.Partitions) != 1 || pt.Partitions[0].Start != 2048 ||
				pt.Partitions[0].Size*512 != layout.PartSize || pt.Partitions[0].Type != wantType {
				t.Errorf("sfdisk sees %+v, want one %s partition at sector 2048 of %d bytes", pt, wantType, layout.PartSize)
			}

			// Filesystem identity, as blkid probes it.
			off := strconv.FormatInt(info.PartStart, 10)
			out, err = exec.Command("blkid", "-p", "-o", "export", "--offset", off, path).Output()
			if err != nil {
				t.Fatalf("blkid: %v", err)
			}
			got := string(out)
			for _, w := range []string{"TYPE=" + c.fs, "LABEL=toolcheck", "UUID=" + testUUID, fmt.Sprintf("BLOCK_SIZE=%d", c.blockSize)} {
				if !strings.Contains(got, w+"\n") {
					t.Errorf("blkid output lacks %s:\n%s", w, got)
				}
			}

			// Superblock fields, as dumpe2fs reads them.
			target := info.FsckTarget()
			out, err = exec.Command("dumpe2fs", "-h", target).Output()
			if err != nil {
				t.Fatalf("dumpe2fs -h: %v", err)
			}
			fields := map[string]string{}
			for _, l := range strings.Split(string(out), "\n") {
				if k, v, ok := strings.Cut(l, ":"); ok {
					fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
				}
			}
			wantFeat := "ext_attr dir_index filetype sparse_super large_file"
			if c.fs == "ext4" {
				wantFeat = "ext_attr dir_index filetype extent sparse_super large_file huge_file dir_nlink extra_isize"
			}
			for k, v := range map[string]string{
				"Filesystem volume name": "toolcheck",
				"Filesystem UUID":        testUUID,
				"Filesystem state":       "clean",
				"Filesystem revision #":  "1 (dynamic)",
				"Block size":             strconv.Itoa(c.blockSize),
				"Block count":            strconv.FormatUint(info.BlocksCount, 10),
				"Free blocks":            strconv.FormatUint(info.FreeBlocks, 10),
				"Inode count":            strconv.FormatUint(info.InodesCount, 10),
				"Free inodes":            strconv.FormatUint(info.FreeInodes, 10),
				"Inode size":             "256",
				"Filesystem features":    wantFeat,
			} {
				if fields[k] != v {
					t.Errorf("dumpe2fs %q = %q, want %q", k, fields[k], v)
				}
			}
			if bc := int64(info.BlocksCount) * info.BlockSize; bc > layout.PartSize || bc < layout.PartSize-8*info.BlockSize*8*info.BlockSize {
				t.Errorf("filesystem %d bytes for a %d-byte partition", bc, layout.PartSize)
			}

			// Consistency.
			if out, err := exec.Command("e2fsck", "-fn", target).CombinedOutput(); err != nil {
				t.Errorf("e2fsck -fn: %v\n%s", err, out)
			}

			// Sparse: only metadata occupies the disk.
			var st syscall.Stat_t
			syscall.Stat(path, &st)
			limit := int64(2*MiB) + c.size/1000 // bitmaps and descriptors: well under 0.1%
			if st.Size != c.size || st.Blocks*512 > limit {
				t.Errorf("image: %d bytes, %d on disk; want %d bytes and at most %d on disk", st.Size, st.Blocks*512, c.size, limit)
			}
		})
	}
}
