package layer

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

func TestSinkMovesTopmostCopyDown(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	base := newTree(t, dir, "base").file("var/log/dpkg.log", "base\n", 0o644).file("var/lib/dpkg/status-old", "b", 0o644)
	bottom := newTree(t, dir, "bottom").file("var/log/dpkg.log", "bottom\n", 0o644)
	mid := newTree(t, dir, "mid").file("var/log/dpkg.log", "mid\n", 0o644).whiteout("var/lib/dpkg/status-old")
	top := newTree(t, dir, "top").file("var/log/dpkg.log", "top\n", 0o640).dir("var/log", 0o750).file("var/lib/dpkg/status-old", "top", 0o644)
	top.file("var/cache/new/f", "new", 0o600)
	os.Chown(top.p("var/cache/new"), 7, 8)
	os.Chmod(top.p("var/cache/new"), 0o711)
	unix.Lsetxattr(top.p("var/cache/new"), "user.k", []byte("v"), 0)
	layers := []string{bottom.root, mid.root, top.root}
	before := mergedView(t, dir, base.root, bottom.root, mid.root, top.root)
	for _, rel := range []string{"var/log/dpkg.log", "var/lib/dpkg/status-old", "var/cache/new/f", "var/missing"} {
		touched, err := Sink(layers, rel)
		if err != nil {
			t.Fatal(err)
		}
		if want := rel != "var/missing"; (len(touched) > 0) != want {
			t.Errorf("Sink %s: touched %v", rel, touched)
		}
	}
	after := mergedView(t, dir, base.root, bottom.root, mid.root, top.root)
	if d := Diff(before, after); len(d) > 0 {
		t.Errorf("merged view changed:\n%s", strings.Join(d, "\n"))
	}
	for _, l := range []builder{mid, top} {
		for _, rel := range []string{"var/log/dpkg.log", "var/lib/dpkg/status-old", "var/cache/new/f"} {
			if _, err := os.Lstat(l.p(rel)); err == nil {
				t.Errorf("%s left in %s", rel, l.root)
			}
		}
	}
	if b, _ := os.ReadFile(bottom.p("var/log/dpkg.log")); string(b) != "top\n" {
		t.Errorf("bottom has %q, want the top's copy", b)
	}
	tr, _ := Snapshot(bottom.root)
	if e := tr["var/cache/new"]; e.Mode != 0o711 || e.Uid != 7 || e.Gid != 8 || e.Xattrs != "user.k=v" {
		t.Errorf("directory made in the bottom: %v", e)
	}
}

func TestSinkRefusesWhatWouldHide(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	bottom := newTree(t, dir, "bottom").file("blocked/x", "b", 0o644)
	os.MkdirAll(bottom.p("filepar"), 0o755)
	bottom.file("nondir", "plain file where the sunk file needs a directory", 0o644)
	mid := newTree(t, dir, "mid").opaque("opq")
	top := newTree(t, dir, "top").file("opq/f", "t", 0o644).file("nondir/f", "t", 0o644)
	top.opaque("own")
	top.file("own/f", "t", 0o644)
	top.file("hl/a", "t", 0o644)
	os.Link(top.p("hl/a"), top.p("hl/b"))
	top.symlink("sym", "x")
	top.dir("adir", 0o755)
	layers := []string{bottom.root, mid.root, top.root}
	for _, rel := range []string{"opq/f", "nondir/f", "own/f", "hl/a", "sym", "adir", "../x", "/abs"} {
		touched, err := Sink(layers, rel)
		if err != nil || len(touched) > 0 {
			t.Errorf("Sink %s: %v %v; want nothing done", rel, touched, err)
		}
	}
}

// Random stacks (as TestSquashRandomMatchesKernel builds them): sinking
// any path never changes the merged view, and moves something often.
func TestSinkRandomKeepsView(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	r := rand.New(rand.NewSource(11))
	moved := 0
	names := []string{"a", "b", "c"}
	for i := 0; i < 80; i++ {
		c := filepath.Join(dir, fmt.Sprint(i))
		base := filepath.Join(c, "base")
		randomLayer(t, r, base, false, "")
		var layers []string
		for k, l := range []string{"l1", "l2", "l3"} {
			view := filepath.Join(t.TempDir(), fmt.Sprint(k))
			if _, err := Squash(view, append([]string{base}, layers...), Options{}); err != nil {
				t.Fatal(err)
			}
			randomLayer(t, r, filepath.Join(c, l), true, view)
			layers = append(layers, filepath.Join(c, l))
		}
		before := mergedView(t, c, append([]string{base}, layers...)...)
		// every path of the upper layers, and some that none has
		var rels []string
		for _, l := range layers[1:] {
			tr, err := Snapshot(l)
			if err != nil {
				t.Fatal(err)
			}
			for rel := range tr {
				rels = append(rels, rel)
			}
		}
		for j := 0; j < 3; j++ {
			rels = append(rels, filepath.Join(names[r.Intn(3)], names[r.Intn(3)]))
		}
		r.Shuffle(len(rels), func(a, b int) { rels[a], rels[b] = rels[b], rels[a] })
		for _, rel := range rels {
			touched, err := Sink(layers, rel)
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			if len(touched) > 0 {
				moved++
			}
		}
		after := mergedView(t, c, append([]string{base}, layers...)...)
		if d := Diff(before, after); len(d) > 0 {
			t.Fatalf("case %d: merged view changed by Sink:\n%s", i, strings.Join(d, "\n"))
		}
	}
	t.Logf("%d sinks moved a file", moved)
	if moved < 100 {
		t.Errorf("only %d sinks moved a file: the cases do not exercise Sink", moved)
	}
}

func TestUnchangedAndRemove(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	old := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	base := newTree(t, dir, "base")
	base.file("copied", strings.Repeat("t", 5000), 0o644)
	base.file("rewritten", "same", 0o644)
	base.file("changed", "aaaa", 0o644)
	base.file("mode", "m", 0o644)
	base.file("opq/f", "o", 0o644)
	base.file("lower/f", "l", 0o644)
	for _, f := range []string{"copied", "rewritten", "changed", "mode", "opq/f", "lower/f"} {
		os.Chtimes(base.p(f), old, old)
	}
	low := newTree(t, dir, "low").file("lower/f", "l2", 0o644)
	os.Chtimes(low.p("lower/f"), old, old)
	up := newTree(t, dir, "up")
	up.file("copied", strings.Repeat("t", 5000), 0o644)
	up.file("rewritten", "same", 0o644) // same bytes, new mtime: kept
	up.file("changed", "aaab", 0o644)
	up.file("mode", "m", 0o600)
	up.opaque("opq")
	up.file("opq/f", "o", 0o644)
	up.file("lower/f", "l2", 0o644)
	up.file("new", "n", 0o644)
	for _, f := range []string{"copied", "changed", "mode", "opq/f", "lower/f"} {
		os.Chtimes(up.p(f), old, old)
	}
	before := mergedView(t, dir, base.root, low.root, up.root)
	same, err := Unchanged(up.root, []string{low.root, base.root})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range same {
		got = append(got, f.Rel)
	}
	if strings.Join(got, " ") != "copied lower/f" {
		t.Fatalf("Unchanged = %v, want [copied lower/f]", got)
	}
	// A file replaced since it was listed is not removed.
	os.Remove(up.p("lower/f"))
	up.file("lower/f", "l2", 0o644)
	os.Chtimes(up.p("lower/f"), old, old)
	for i, f := range same {
		ok, err := RemoveIfSame(up.root, f)
		if err != nil || ok != (i == 0) {
			t.Errorf("RemoveIfSame %s: %v %v", f.Rel, ok, err)
		}
	}
	after := mergedView(t, dir, base.root, low.root, up.root)
	if d := Diff(before, after); len(d) > 0 {
		t.Errorf("merged view changed:\n%s", strings.Join(d, "\n"))
	}
	fs, err := Files(up.root, "opq")
	if err != nil || len(fs) != 1 || fs[0].Rel != "opq/f" {
		t.Errorf("Files(opq) = %v, %v", fs, err)
	}
	if fs, err := Files(up.root, "missing"); err != nil || len(fs) != 0 {
		t.Errorf("Files(missing) = %v, %v", fs, err)
	}
}

func TestPruneEmpty(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	base := newTree(t, dir, "base").dir("var/cache/man/de", 0o755).dir("var/odd", 0o700).file("var/cache/x", "x", 0o644)
	up := newTree(t, dir, "up").dir("var/cache/man/de", 0o755).dir("var/odd", 0o755).dir("var/new/d", 0o755)
	up.opaque("var/opq")
	base.dir("var/opq", 0o755)
	n, err := PruneEmpty(up.root, []string{"var/cache/man/de/index.db", "var/odd/f", "var/new/d/f", "var/opq/f"}, []string{base.root})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := Snapshot(up.root)
	// man/de, man, cache go (alike below); odd differs in mode, new is
	// not below, opq is opaque; var itself is never removed.
	for _, kept := range []string{"var", "var/odd", "var/new/d", "var/opq"} {
		if _, ok := tr[kept]; !ok {
			t.Errorf("%s removed", kept)
		}
	}
	for _, gone := range []string{"var/cache/man/de", "var/cache/man", "var/cache"} {
		if _, ok := tr[gone]; ok {
			t.Errorf("%s kept", gone)
		}
	}
	if n != 3 {
		t.Errorf("removed %d, want 3", n)
	}
}

// The kernel agrees: an overlay of the layers before and after a Sink
// shows the same tree.
func TestSinkMatchesKernelOverlay(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.TempDir(t)
	base := newTree(t, dir, "base").file("var/log/dpkg.log", "base\n", 0o644).file("var/log/other", "o", 0o644)
	l1 := newTree(t, dir, "l1").file("etc/x", "x", 0o644)
	l2 := newTree(t, dir, "l2").file("var/log/dpkg.log", "l2\n", 0o644)
	l3 := newTree(t, dir, "l3").file("var/log/dpkg.log", "l3\n", 0o600).file("var/log/apt/term.log", "t", 0o640)
	opts := "redirect_dir=nofollow,metacopy=off,index=off"
	list := `list() { (cd "$1" && find . -mindepth 1 -printf '%P %y %m %U:%G %s %l\n' | sort); }`
	r := nstest.MustRun(t, fmt.Sprintf(`%s
D=%q
mkdir -p $D/m
mount -t overlay ovl -o lowerdir=$D/l3:$D/l2:$D/l1:$D/base,%s $D/m
list $D/m > $D/before; cat $D/m/var/log/dpkg.log > $D/before.log
umount $D/m
`, list, dir, opts))
	_ = r
	for _, rel := range []string{"var/log/dpkg.log", "var/log/apt/term.log"} {
		if touched, err := Sink([]string{l1.root, l2.root, l3.root}, rel); err != nil || len(touched) == 0 {
			t.Fatalf("Sink %s: %v %v", rel, touched, err)
		}
	}
	nstest.MustRun(t, fmt.Sprintf(`%s
D=%q
mount -t overlay ovl -o lowerdir=$D/l3:$D/l2:$D/l1:$D/base,%s $D/m
list $D/m > $D/after; cat $D/m/var/log/dpkg.log > $D/after.log
umount $D/m
diff $D/before $D/after
diff $D/before.log $D/after.log
grep -qx l3 $D/after.log
`, list, dir, opts))
	_ = base
}
