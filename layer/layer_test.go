package layer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// builder writes test trees tersely; fatal on error.
type builder struct {
	t    *testing.T
	root string
}

func (b builder) p(rel string) string { return filepath.Join(b.root, rel) }

func (b builder) dir(rel string, mode os.FileMode) builder {
	b.t.Helper()
	if err := os.MkdirAll(b.p(rel), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.Chmod(b.p(rel), mode); err != nil {
		b.t.Fatal(err)
	}
	return b
}

func (b builder) file(rel, content string, mode os.FileMode) builder {
	b.t.Helper()
	os.MkdirAll(filepath.Dir(b.p(rel)), 0o755)
	if err := os.WriteFile(b.p(rel), []byte(content), mode); err != nil {
		b.t.Fatal(err)
	}
	os.Chmod(b.p(rel), mode)
	return b
}

func (b builder) symlink(rel, target string) builder {
	b.t.Helper()
	os.MkdirAll(filepath.Dir(b.p(rel)), 0o755)
	if err := os.Symlink(target, b.p(rel)); err != nil {
		b.t.Fatal(err)
	}
	return b
}

func (b builder) whiteout(rel string) builder {
	b.t.Helper()
	os.MkdirAll(filepath.Dir(b.p(rel)), 0o755)
	if err := MakeWhiteout(b.p(rel)); err != nil {
		b.t.Fatal(err)
	}
	return b
}

func (b builder) opaque(rel string) builder {
	b.t.Helper()
	b.dir(rel, 0o755)
	if err := SetOpaque(b.p(rel)); err != nil {
		b.t.Fatal(err)
	}
	return b
}

func newTree(t *testing.T, parent, name string) builder {
	t.Helper()
	b := builder{t, filepath.Join(parent, name)}
	if err := os.MkdirAll(b.root, 0o755); err != nil {
		t.Fatal(err)
	}
	return b
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (whiteouts, trusted.* xattrs, chown); CI runs as root")
	}
}

// richTree has one of everything Copy must keep.
func richTree(t *testing.T, parent string) builder {
	b := newTree(t, parent, "src")
	b.file("usr/bin/tool", "#!/bin/sh\necho hi\n", 0o755)
	b.file("usr/bin/suid", "x", 0o4755)
	b.dir("usr/share/empty", 0o700)
	b.symlink("usr/bin/link", "tool")
	b.symlink("usr/dangling", "/nowhere/at/all")
	b.file("etc/a", "hardlinked\n", 0o644)
	if err := os.Link(b.p("etc/a"), b.p("etc/b")); err != nil {
		t.Fatal(err)
	}
	// sparse: 8 MiB apparent, 2 small extents
	f, err := os.Create(b.p("var/sparse"))
	if err != nil {
		os.MkdirAll(b.p("var"), 0o755)
		f, err = os.Create(b.p("var/sparse"))
		if err != nil {
			t.Fatal(err)
		}
	}
	f.WriteAt([]byte("start"), 0)
	f.WriteAt([]byte("middle"), 4<<20)
	f.Truncate(8 << 20)
	f.Close()
	if err := unix.Mkfifo(b.p("var/fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(b.p("etc/a"), "user.note", []byte("kept"), 0); err != nil {
		t.Logf("user xattrs unsupported here: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(b.p("var/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		b.whiteout("usr/gone")
		b.opaque("etc/opq")
		b.file("etc/opq/x", "x", 0o600)
		if err := unix.Lsetxattr(b.p("usr/bin/tool"), "trusted.test", []byte("t"), 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(b.p("usr/bin/link"), 12, 34); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(b.p("etc/a"), 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func mustEqual(t *testing.T, a, b string) {
	t.Helper()
	ok, d, err := Equal(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("%s and %s differ:\n%s", a, b, strings.Join(d, "\n"))
	}
}

func TestCopyKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	src := richTree(t, dir)
	dst := filepath.Join(dir, "dst")
	var last Progress
	st, err := Copy(dst, src.root, Options{Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, src.root, dst)
	if last.Files != last.TotalFiles || last.Bytes != last.TotalBytes || last.TotalFiles == 0 {
		t.Errorf("final progress %+v not complete", last)
	}
	if st.Files != last.TotalFiles {
		t.Errorf("stats %+v vs progress %+v", st, last)
	}
	var a, b unix.Stat_t
	unix.Lstat(filepath.Join(dst, "etc/a"), &a)
	unix.Lstat(filepath.Join(dst, "etc/b"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hardlink group lost: ino %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	var sp unix.Stat_t
	unix.Lstat(filepath.Join(dst, "var/sparse"), &sp)
	if sp.Size != 8<<20 || sp.Blocks*512 > 1<<20 {
		t.Errorf("sparse file not sparse: size %d, %d bytes allocated", sp.Size, sp.Blocks*512)
	}
	// times kept (mtime of a dir and a file)
	for _, rel := range []string{"usr/bin", "usr/bin/tool", "usr/bin/link"} {
		var s1, s2 unix.Stat_t
		unix.Lstat(filepath.Join(src.root, rel), &s1)
		unix.Lstat(filepath.Join(dst, rel), &s2)
		if s1.Mtim != s2.Mtim {
			t.Errorf("%s: mtime %v, want %v", rel, s2.Mtim, s1.Mtim)
		}
	}
}

// Copy's result equals what cp -a makes of the same tree (an independent
// tool).
func TestCopyMatchesCpA(t *testing.T) {
	dir := t.TempDir()
	src := richTree(t, dir)
	if out, err := exec.Command("cp", "-a", src.root, filepath.Join(dir, "cp")).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	if _, err := Copy(filepath.Join(dir, "go"), src.root, Options{}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, filepath.Join(dir, "cp"), filepath.Join(dir, "go"))
}

func TestCopyRefusesNonEmptyDst(t *testing.T) {
	dir := t.TempDir()
	src := newTree(t, dir, "src").file("a", "a", 0o644)
	dst := newTree(t, dir, "dst").file("keep", "k", 0o644)
	if _, err := Copy(dst.root, src.root, Options{}); !errorsIs(err, unix.ENOTEMPTY) {
		t.Fatalf("want ENOTEMPTY, got %v", err)
	}
	if b, _ := os.ReadFile(dst.p("keep")); string(b) != "k" {
		t.Error("existing file touched")
	}
}

// layers: base, L1, L2 exercising every overlay rule.
func overlayCase(t *testing.T, dir string) (base, l1, l2 builder) {
	base = newTree(t, dir, "base")
	base.file("keep", "base keep\n", 0o644)
	base.file("shadowed", "base version\n", 0o644)
	base.file("wo-by-l1", "base\n", 0o644)
	base.file("wo-by-l2", "base\n", 0o644)
	base.file("d/base-only", "b\n", 0o644)
	base.file("opq-l2/base-child", "b\n", 0o644)
	base.file("replaced-by-file/child", "b\n", 0o644)
	base.file("dir-over-wo/base-child", "b\n", 0o644)
	base.file("file-then-dir", "b\n", 0o644)

	l1 = newTree(t, dir, "l1")
	l1.file("shadowed", "l1 version\n", 0o600)
	l1.whiteout("wo-by-l1")
	l1.file("d/l1-only", "l1\n", 0o644)
	l1.file("d/l1-removed-by-l2", "l1\n", 0o644)
	l1.file("opq-l2/l1-child", "l1\n", 0o644)
	l1.file("l1-new", "new in l1\n", 0o644)
	l1.whiteout("dir-over-wo")
	l1.file("file-then-dir", "l1 file\n", 0o644)
	l1.opaque("opq-l1")
	l1.file("opq-l1/x", "x\n", 0o644)
	l1.file("hl/one", "linked\n", 0o644)
	os.Link(l1.p("hl/one"), l1.p("hl/two"))
	os.Link(l1.p("hl/one"), l1.p("hl/three"))

	l2 = newTree(t, dir, "l2")
	l2.whiteout("wo-by-l2")
	l2.whiteout("d/l1-removed-by-l2")
	l2.whiteout("l1-new")
	l2.opaque("opq-l2")
	l2.file("opq-l2/l2-child", "l2\n", 0o644)
	l2.file("replaced-by-file", "now a file\n", 0o644)
	l2.file("dir-over-wo/l2-child", "l2\n", 0o644) // non-opaque dir over l1's whiteout
	l2.file("file-then-dir/x", "l2\n", 0o644)      // non-opaque dir over l1's file
	l2.file("opq-l1/y", "y\n", 0o644)              // non-opaque over opaque stays opaque
	l2.file("hl/one", "replaced\n", 0o644)         // breaks one name out of the group
	l2.symlink("sl", "keep")
	os.Chmod(l2.p("d"), 0o750)
	return
}

func TestSquashCardLayersKeepsWhiteouts(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	_, l1, l2 := overlayCase(t, dir)
	dst := filepath.Join(dir, "sq")
	st, err := Squash(dst, []string{l1.root, l2.root}, Options{KeepWhiteouts: true})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Snapshot(dst)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // rel -> type(+opaque) or content
		"shadowed":             "l1 version\n",
		"wo-by-l1":             "w",
		"wo-by-l2":             "w",
		"d/l1-only":            "l1\n",
		"d/l1-removed-by-l2":   "w",
		"l1-new":               "w", // harmless: the base might have it
		"opq-l2":               "d opaque",
		"opq-l2/l2-child":      "l2\n",
		"replaced-by-file":     "now a file\n",
		"dir-over-wo":          "d opaque",
		"dir-over-wo/l2-child": "l2\n",
		"file-then-dir":        "d opaque",
		"file-then-dir/x":      "l2\n",
		"opq-l1":               "d opaque",
		"opq-l1/x":             "x\n",
		"opq-l1/y":             "y\n",
		"d":                    "d",
		"hl/one":               "replaced\n",
		"hl/two":               "linked\n",
		"sl":                   "l",
	}
	for rel, w := range want {
		e, ok := tr[rel]
		if !ok {
			t.Errorf("%s missing", rel)
			continue
		}
		got := string(e.Type)
		if e.Type == 'd' && e.Opaque {
			got = "d opaque"
		}
		if e.Type == 'f' {
			b, _ := os.ReadFile(filepath.Join(dst, rel))
			got = string(b)
		}
		if got != w {
			t.Errorf("%s: got %q want %q", rel, got, w)
		}
	}
	for _, gone := range []string{"opq-l2/l1-child", "keep", "d/base-only"} {
		if _, ok := tr[gone]; ok {
			t.Errorf("%s should not be in the squashed card layer", gone)
		}
	}
	if tr["d"].Mode != 0o750 || tr["shadowed"].Mode != 0o600 {
		t.Errorf("metadata of the topmost layer not kept: d %o shadowed %o", tr["d"].Mode, tr["shadowed"].Mode)
	}
	var a, b, c unix.Stat_t
	unix.Lstat(filepath.Join(dst, "hl/one"), &a)
	unix.Lstat(filepath.Join(dst, "hl/two"), &b)
	unix.Lstat(filepath.Join(dst, "hl/three"), &c)
	if b.Ino != c.Ino || a.Ino == b.Ino {
		t.Errorf("hardlink groups wrong: one %d two %d three %d", a.Ino, b.Ino, c.Ino)
	}
	if st.Whiteouts != 4 {
		t.Errorf("whiteouts %d, want 4", st.Whiteouts)
	}
}

func TestSquashOntoBaseIsPlainTree(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	base, l1, l2 := overlayCase(t, dir)
	full := filepath.Join(dir, "full")
	if _, err := Squash(full, []string{base.root, l1.root, l2.root}, Options{}); err != nil {
		t.Fatal(err)
	}
	tr, _ := Snapshot(full)
	for rel, e := range tr {
		if e.Type == 'w' || e.Opaque {
			t.Errorf("%s: overlay marker left in a full tree: %s", rel, e)
		}
	}
	for _, rel := range []string{"keep", "d/base-only", "dir-over-wo/l2-child", "opq-l2/l2-child"} {
		if _, ok := tr[rel]; !ok {
			t.Errorf("%s missing from the full tree", rel)
		}
	}
	for _, rel := range []string{"wo-by-l1", "wo-by-l2", "l1-new", "opq-l2/base-child", "opq-l2/l1-child",
		"dir-over-wo/base-child", "replaced-by-file/child", "d/l1-removed-by-l2"} {
		if _, ok := tr[rel]; ok {
			t.Errorf("%s should be hidden in the full tree", rel)
		}
	}
	// Squashing the card layers first, then onto the base, gives the same tree.
	sq := filepath.Join(dir, "sq")
	if _, err := Squash(sq, []string{l1.root, l2.root}, Options{KeepWhiteouts: true}); err != nil {
		t.Fatal(err)
	}
	full2 := filepath.Join(dir, "full2")
	if _, err := Squash(full2, []string{base.root, sq}, Options{}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, full, full2)
}

func TestSquashLinkModeLeavesLayersIntact(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	_, l1, l2 := overlayCase(t, dir)
	before1, _ := Snapshot(l1.root)
	before2, _ := Snapshot(l2.root)
	cp := filepath.Join(dir, "copy")
	ln := filepath.Join(dir, "link")
	if _, err := Squash(cp, []string{l1.root, l2.root}, Options{KeepWhiteouts: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Squash(ln, []string{l1.root, l2.root}, Options{KeepWhiteouts: true, Link: true}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, cp, ln)
	after1, _ := Snapshot(l1.root)
	after2, _ := Snapshot(l2.root)
	if d := append(Diff(before1, after1), Diff(before2, after2)...); len(d) > 0 {
		t.Errorf("layers changed by a linked squash: %v", d)
	}
}

func TestDedupe(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	base := newTree(t, dir, "base")
	base.file("same", strings.Repeat("s", 10000), 0o644)
	base.file("diffmode", "m", 0o644)
	base.file("diffcontent", "aaaa", 0o644)
	base.file("xattr", "x", 0o644)
	base.symlink("sym", "same")
	base.file("sub/deep/same", "deep", 0o644)
	base.file("opq/same", "o", 0o644)
	base.file("hidden/same", "h", 0o644)
	up := newTree(t, dir, "up")
	up.file("same", strings.Repeat("s", 10000), 0o644)
	up.file("diffmode", "m", 0o600)
	up.file("diffcontent", "aaab", 0o644)
	up.file("xattr", "x", 0o644)
	unix.Lsetxattr(up.p("xattr"), "user.k", []byte("v"), 0)
	up.symlink("sym", "same")
	up.file("sub/deep/same", "deep", 0o644)
	up.file("new", "n", 0o644)
	up.whiteout("wo")
	up.opaque("opq")
	up.file("opq/same", "o", 0o644)
	mergedBefore := mergedView(t, dir, base.root, up.root)
	st, err := Dedupe(up.root, []string{base.root})
	if err != nil {
		t.Fatal(err)
	}
	left, _ := Snapshot(up.root)
	for _, rel := range []string{"same", "sym", "sub/deep/same", "sub/deep", "sub"} {
		if _, ok := left[rel]; ok {
			t.Errorf("%s identical to the base but kept", rel)
		}
	}
	for _, rel := range []string{"diffmode", "diffcontent", "xattr", "new", "wo", "opq", "opq/same"} {
		if _, ok := left[rel]; !ok {
			t.Errorf("%s removed but it differs from the base (or is a whiteout/opaque)", rel)
		}
	}
	if st.Files != 3 || st.Dirs != 2 || st.Bytes < 10000 {
		t.Errorf("stats %+v, want 3 files, 2 dirs, >= 10000 bytes", st)
	}
	mergedAfter := mergedView(t, dir, base.root, up.root)
	if d := Diff(mergedBefore, mergedAfter); len(d) > 0 {
		t.Errorf("merged view changed by dedupe:\n%s", strings.Join(d, "\n"))
	}
}

var mergedN int

// mergedView is the full tree of upper over base (Squash without markers).
func mergedView(t *testing.T, dir string, layers ...string) Tree {
	t.Helper()
	mergedN++
	p := filepath.Join(dir, fmt.Sprintf("merged%d", mergedN))
	if _, err := Squash(p, layers, Options{}); err != nil {
		t.Fatal(err)
	}
	tr, err := Snapshot(p)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func errorsIs(err error, target error) bool {
	for err != nil {
		if err == target {
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// The kernel is the reference: the overlay of L2:L1:base and the overlay of
// the squashed layer over base show the same merged view, compared with
// find(1) and diff(1) inside a private mount namespace.
func TestSquashMatchesKernelOverlay(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.TempDir(t)
	base, l1, l2 := overlayCase(t, dir)
	sq := filepath.Join(dir, "sq")
	if _, err := Squash(sq, []string{l1.root, l2.root}, Options{KeepWhiteouts: true}); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full")
	if _, err := Squash(full, []string{base.root, l1.root, l2.root}, Options{}); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`
D=%q
mkdir -p $D/m1 $D/m2
mount -t overlay ovl -o lowerdir=$D/l2:$D/l1:$D/base,redirect_dir=nofollow,metacopy=off,index=off $D/m1
mount -t overlay ovl -o lowerdir=$D/sq:$D/base,redirect_dir=nofollow,metacopy=off,index=off $D/m2
list() { (cd "$1" && find . -mindepth 1 -printf '%%P %%y %%m %%U:%%G %%s %%l\n' | sort); }
list $D/m1 > $D/l.m1
list $D/m2 > $D/l.m2
list $D/full > $D/l.full
diff -u $D/l.m1 $D/l.m2
diff -u $D/l.m1 $D/l.full
diff -r --no-dereference $D/m1 $D/m2
diff -r --no-dereference $D/m1 $D/full
wc -l < $D/l.m1
umount $D/m2 $D/m1
`, dir)
	r := nstest.Run(t, script)
	if r.Code != 0 {
		t.Fatalf("kernel overlay and squash differ:\n%s", r)
	}
	if n := strings.TrimSpace(r.Stdout); n == "0" || n == "" {
		t.Fatalf("empty merged view: %s", r)
	}
}

func TestPruneWhiteouts(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	base := newTree(t, dir, "base").file("d/keep", "k", 0o644).file("top", "t", 0o644)
	up := newTree(t, dir, "up")
	up.whiteout("d/keep")   // hides a base file: stays
	up.whiteout("top")      // hides a base file: stays
	up.whiteout("d/ghost")  // nothing below: goes
	up.whiteout("new/gone") // directory the base lacks: goes
	up.opaque("d2")
	up.whiteout("d2/x") // under an opaque directory: goes
	n, err := PruneWhiteouts(up.root, []string{base.root})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := Snapshot(up.root)
	if n != 3 || tr["d/keep"].Type != 'w' || tr["top"].Type != 'w' {
		t.Errorf("removed %d; left %v", n, tr)
	}
	for _, gone := range []string{"d/ghost", "new/gone", "d2/x"} {
		if _, ok := tr[gone]; ok {
			t.Errorf("%s kept", gone)
		}
	}
}
