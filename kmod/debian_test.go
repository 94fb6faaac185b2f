package kmod_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/qemutest"
	"github.com/ovpkg/ovpkg/kmod"
)

// TestDebianKernelModules resolves real modules of Debian's kernel: the
// dependencies read from the modules' own .modinfo (modules.dep was
// generated from them by qemutest) and the aliases init-overlay uses.
func TestDebianKernelModules(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads Debian's kernel")
	}
	k := qemutest.DebianKernel(t)
	d := &kmod.Dir{Path: k.Modules}
	files, err := d.Closure("virtio_blk", "fs-ext2", "fs-vfat", "overlay", "loop")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, kmod.Name(f))
	}
	got := strings.Join(names, " ")
	pos := func(n string) int {
		for i, x := range names {
			if x == n {
				return i
			}
		}
		t.Fatalf("%s missing from %s", n, got)
		return -1
	}
	for _, dep := range [][2]string{{"virtio", "virtio_blk"}, {"virtio_ring", "virtio_blk"}, {"jbd2", "ext4"}, {"mbcache", "ext4"}, {"crc16", "ext4"}, {"fat", "vfat"}} {
		if pos(dep[0]) > pos(dep[1]) {
			t.Errorf("%s comes after %s, which needs it: %s", dep[0], dep[1], got)
		}
	}
	info, err := kmod.ModInfo(filepath.Join(k.Modules, "kernel/fs/ext4/ext4.ko"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(info["depends"], ",") != "jbd2,mbcache,crc16" || !strings.Contains(strings.Join(info["alias"], " "), "fs-ext2") {
		t.Errorf("ext4 modinfo: %v", info)
	}
}
