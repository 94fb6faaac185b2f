package qemutest

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/kmod"
)

// Dir is a directory tree that becomes a disk image.
type Dir struct {
	t    testing.TB
	Path string
}

// NewDir returns an empty tree in a temporary directory.
func NewDir(t testing.TB) *Dir {
	t.Helper()
	d := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return &Dir{t: t, Path: d}
}

// P is the host path of name in the tree.
func (d *Dir) P(name string) string { return filepath.Join(d.Path, name) }

// Mkdir makes directories (with parents).
func (d *Dir) Mkdir(names ...string) {
	d.t.Helper()
	for _, n := range names {
		if err := os.MkdirAll(d.P(n), 0o755); err != nil {
			d.t.Fatal(err)
		}
	}
}

// Write writes a file (parents made).
func (d *Dir) Write(name, data string, perm os.FileMode) {
	d.t.Helper()
	d.Mkdir(filepath.Dir(name))
	if err := os.WriteFile(d.P(name), []byte(data), perm); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Chmod(d.P(name), perm); err != nil {
		d.t.Fatal(err)
	}
}

// Copy copies host file src to name (parents made; mode kept).
func (d *Dir) Copy(name, src string) {
	d.t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		d.t.Fatal(err)
	}
	st, err := os.Stat(src)
	if err != nil {
		d.t.Fatal(err)
	}
	d.Write(name, string(b), st.Mode().Perm())
}

// Symlink makes a symbolic link.
func (d *Dir) Symlink(name, target string) {
	d.t.Helper()
	d.Mkdir(filepath.Dir(name))
	os.Remove(d.P(name))
	if err := os.Symlink(target, d.P(name)); err != nil {
		d.t.Fatal(err)
	}
}

// Busybox installs busybox as /bin/busybox with a link for each applet
// in /bin (and /sbin/init pointing at it unless replaced later).
func (d *Dir) Busybox(bb string) {
	d.t.Helper()
	d.Copy("bin/busybox", bb)
	for _, a := range BusyboxApplets(d.t, bb) {
		if a == "busybox" {
			continue
		}
		if _, err := os.Lstat(d.P("bin/" + a)); err != nil {
			d.Symlink("bin/"+a, "busybox")
		}
	}
}

// Modules copies the module files the named modules need (with their
// dependencies) from k, keeping their paths, with a modules.dep,
// modules.alias and modules.builtin for that subset.
func (d *Dir) Modules(k *Kernel, names ...string) {
	d.t.Helper()
	files, err := (&kmod.Dir{Path: k.Modules}).Closure(names...)
	if err != nil {
		d.t.Fatal(err)
	}
	dst := d.P(filepath.Join("lib/modules", k.Release))
	for _, f := range files {
		rel, _ := filepath.Rel(k.Modules, f)
		d.Copy(filepath.Join("lib/modules", k.Release, rel), f)
	}
	if b, err := os.ReadFile(filepath.Join(k.Modules, "modules.builtin")); err == nil {
		d.Write(filepath.Join("lib/modules", k.Release, "modules.builtin"), string(b), 0o644)
	}
	if err := kmod.Generate(dst); err != nil {
		d.t.Fatal(err)
	}
}

// Ext builds an ext2/ext3/ext4 image of sizeMB from the tree with
// mke2fs -d (no privileges needed). Owners are the tree's (root when the
// test runs as root).
func (d *Dir) Ext(fstype string, sizeMB int, extra ...string) string {
	d.t.Helper()
	nstest.Need(d.t, "mke2fs")
	img := filepath.Join(filepath.Dir(d.Path), fstype+".img")
	args := append([]string{"-q", "-F", "-t", fstype, "-d", d.Path}, extra...)
	args = append(args, img, fmt.Sprintf("%dM", sizeMB))
	if out, err := exec.Command("mke2fs", args...).CombinedOutput(); err != nil {
		d.t.Fatalf("mke2fs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return img
}

// Size is the bytes the tree's files take (for sizing images).
func (d *Dir) Size() int64 {
	var n int64
	filepath.WalkDir(d.Path, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
