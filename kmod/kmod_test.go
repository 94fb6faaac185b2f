package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeModule writes a file that looks like a module to ModInfo.
func fakeModule(t *testing.T, dir, rel, depends string, aliases ...string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	s := "\x7fELF junk\x00vermagic=6.1.0 SMP mod_unload\x00name=" + Name(rel) + "\x00depends=" + depends + "\x00"
	for _, a := range aliases {
		s += "alias=" + a + "\x00"
	}
	if err := os.WriteFile(p, []byte(s+"more junk"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tree(t *testing.T) string {
	dir := t.TempDir()
	fakeModule(t, dir, "kernel/fs/ext4/ext4.ko", "jbd2,mbcache,crc16", "fs-ext4", "fs-ext2", "ext2")
	fakeModule(t, dir, "kernel/fs/jbd2/jbd2.ko", "")
	fakeModule(t, dir, "kernel/fs/mbcache.ko", "")
	fakeModule(t, dir, "kernel/lib/crc16.ko", "")
	fakeModule(t, dir, "kernel/fs/overlayfs/overlay.ko", "")
	fakeModule(t, dir, "kernel/fs/fat/vfat.ko", "fat", "fs-vfat")
	fakeModule(t, dir, "kernel/fs/fat/fat.ko", "")
	fakeModule(t, dir, "kernel/drivers/block/virtio-blk.ko", "virtio_ring,virtio")
	fakeModule(t, dir, "kernel/drivers/virtio/virtio_ring.ko", "virtio")
	fakeModule(t, dir, "kernel/drivers/virtio/virtio.ko", "")
	return dir
}

func load(t *testing.T, d *Dir, name string) []string {
	t.Helper()
	var got []string
	d.Insert = func(f string) error { got = append(got, Name(f)); return nil }
	d.SysModule = t.TempDir()
	if err := d.Load(name); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestLoadOrderWithAndWithoutModulesDep(t *testing.T) {
	dir := tree(t)
	// Without modules.dep: the dependencies come from .modinfo.
	for _, c := range []struct {
		name string
		want []string
	}{
		{"ext4", []string{"crc16", "mbcache", "jbd2", "ext4"}},
		{"fs-ext2", []string{"crc16", "mbcache", "jbd2", "ext4"}},
		{"virtio_blk", []string{"virtio", "virtio_ring", "virtio_blk"}},
		{"virtio-blk", []string{"virtio", "virtio_ring", "virtio_blk"}},
		{"fs-vfat", []string{"fat", "vfat"}},
	} {
		got := load(t, &Dir{Path: dir}, c.name)
		// Every dependency before what needs it.
		pos := map[string]int{}
		for i, n := range got {
			pos[n] = i
		}
		if len(got) != len(c.want) || pos[c.want[len(c.want)-1]] != len(got)-1 {
			t.Errorf("fallback: load %s = %v, want %v in a dependency order", c.name, got, c.want)
		}
		if c.name == "virtio_blk" && !(pos["virtio"] < pos["virtio_ring"]) {
			t.Errorf("fallback: virtio_ring loaded before virtio: %v", got)
		}
	}
	// With the generated modules.dep (as depmod writes it).
	if err := Generate(dir); err != nil {
		t.Fatal(err)
	}
	dep, _ := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if !strings.Contains(string(dep), "kernel/drivers/block/virtio-blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n") {
		t.Errorf("modules.dep:\n%s", dep)
	}
	alias, _ := os.ReadFile(filepath.Join(dir, "modules.alias"))
	if !strings.Contains(string(alias), "alias fs-ext2 ext4\n") {
		t.Errorf("modules.alias:\n%s", alias)
	}
	if got := load(t, &Dir{Path: dir}, "virtio_blk"); !reflect.DeepEqual(got, []string{"virtio", "virtio_ring", "virtio_blk"}) {
		t.Errorf("modules.dep: load virtio_blk = %v", got)
	}
	if got := load(t, &Dir{Path: dir}, "fs-ext2"); len(got) != 4 || got[3] != "ext4" {
		t.Errorf("modules.dep: load fs-ext2 = %v", got)
	}
}

func TestPresentModulesAreNotLoaded(t *testing.T) {
	dir := tree(t)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/lib/crc16.ko\n"), 0o644)
	d := &Dir{Path: dir, SysModule: t.TempDir()}
	os.Mkdir(filepath.Join(d.SysModule, "jbd2"), 0o755) // loaded already
	var got []string
	d.Insert = func(f string) error { got = append(got, Name(f)); return nil }
	if err := d.Load("ext4"); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []string{"mbcache", "ext4"}) {
		t.Errorf("loaded %v, want mbcache ext4 (crc16 built in, jbd2 loaded)", got)
	}
}

func TestErrors(t *testing.T) {
	dir := tree(t)
	d := &Dir{Path: dir, SysModule: t.TempDir()}
	if err := d.Load("nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load(nosuch) = %v, want ErrNotFound", err)
	}
	failing := errors.New("Exec format error")
	d.Insert = func(f string) error {
		if Name(f) == "jbd2" {
			return failing
		}
		return nil
	}
	err := d.Load("ext4")
	var ke *Error
	if !errors.Is(err, failing) || !errors.As(err, &ke) || ke.Module != "jbd2" || !strings.Contains(err.Error(), "ext4 needs it") {
		t.Errorf("Load(ext4) with a failing jbd2 = %v", err)
	}
	if _, err := ModInfo(filepath.Join(dir, "modules.dep")); err == nil {
		t.Error("ModInfo of a non-module succeeded")
	}
	if _, err := (&Dir{Path: filepath.Join(dir, "missing")}).Resolve("x"); err == nil {
		t.Error("a missing module directory resolved")
	}
}
