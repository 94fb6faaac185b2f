package layer

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// TestSquashMemoryDoesNotGrowWithFiles: Squash writes the merged view as
// it walks it. The live heap, sampled after a forced collection while the
// copy runs, stays bounded with 24 000 files over two layers (a plan
// holding an entry per file, as before, kept about 4 MB live here; a
// router has 32 MB in all). Hard links across directories, whiteouts and
// an opaque directory are on the way and come out right.
func TestSquashMemoryDoesNotGrowWithFiles(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	const dirs, per = 120, 100
	l1 := newTree(t, dir, "l1")
	l2 := newTree(t, dir, "l2")
	for _, l := range []builder{l1, l2} {
		for d := 0; d < dirs; d++ {
			p := l.p(fmt.Sprintf("usr/share/d%03d", d))
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			for f := 0; f < per; f++ {
				name := fmt.Sprintf("%s/f%03d", p, f)
				if l.root == l2.root {
					name = fmt.Sprintf("%s/g%03d", p, f)
				}
				if err := os.WriteFile(name, []byte(name), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// a hard link group across directories (first name in d000, the others later)
	os.Link(l2.p("usr/share/d000/g000"), l2.p("usr/share/d119/link"))
	os.Link(l2.p("usr/share/d000/g000"), l2.p("usr/share/d060/link"))
	l2.whiteout("usr/share/d001/f000")
	l2.opaque("usr/share/d002")
	l2.file("usr/share/d002/only", "only\n", 0o600)
	os.Chmod(l2.p("usr/share/d003"), 0o555) // read-only: set only after its contents

	var mu sync.Mutex
	var peak, samples uint64
	sample := func(Progress) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapAlloc)
		samples++
		mu.Unlock()
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	dst := filepath.Join(dir, "out")
	st, err := Squash(dst, []string{l1.root, l2.root}, Options{KeepWhiteouts: true, Progress: sample, ProgressEvery: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want := int64(2*dirs*per - 1 - per + 1 + 2) // f000 of d001 whited out, d002 shows only l2's + only, two links
	if st.Files != want || st.Whiteouts != 1 {
		t.Errorf("stats %+v, want %d files and 1 whiteout", st, want)
	}
	var a, b unix.Stat_t
	unix.Lstat(filepath.Join(dst, "usr/share/d000/g000"), &a)
	unix.Lstat(filepath.Join(dst, "usr/share/d119/link"), &b)
	if a.Ino != b.Ino || a.Nlink != 3 {
		t.Errorf("hard link group lost: ino %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if !IsOpaque(filepath.Join(dst, "usr/share/d002")) {
		t.Error("d002 not opaque")
	}
	var ro unix.Stat_t
	unix.Lstat(filepath.Join(dst, "usr/share/d003"), &ro)
	if ro.Mode&0o777 != 0o555 {
		t.Errorf("d003 mode %o, want 555", ro.Mode&0o777)
	}
	if _, err := os.Stat(filepath.Join(dst, "usr/share/d003/g099")); err != nil {
		t.Error(err)
	}
	grew := int64(peak) - int64(before)
	t.Logf("live heap: %d KB before, peak %d KB over %d samples (+%d KB)", before/1024, peak/1024, samples, grew/1024)
	if samples < 2 {
		t.Fatalf("only %d samples: the copy was too quick to watch", samples)
	}
	if grew > 1536<<10 {
		t.Errorf("live heap grew by %d KB while squashing %d files: the walk holds the tree", grew/1024, st.Files)
	}
}

// TestDiskUsageCountsHardLinksOnce: DiskUsage remembers only hard-linked
// inodes, and counts each once.
func TestDiskUsageCountsHardLinksOnce(t *testing.T) {
	dir := t.TempDir()
	b := newTree(t, dir, "t")
	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	b.dir("a", 0o755)
	for _, f := range []string{"a/one", "three"} {
		if err := os.WriteFile(b.p(f), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(b.p("a/one"), b.p("two")); err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, p := range []string{"", "a", "a/one", "three"} {
		var st unix.Stat_t
		if err := unix.Lstat(b.p(p), &st); err != nil {
			t.Fatal(err)
		}
		want += st.Blocks * 512
	}
	got, err := DiskUsage(b.root)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || want < 2*64<<10 {
		t.Errorf("DiskUsage %d, want %d (the hard link counted once)", got, want)
	}
}
