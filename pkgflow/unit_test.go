package pkgflow

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/overlay"
	"github.com/ovpkg/ovpkg/pkgmgr"
)

func TestUndoListNewestFirstJoined(t *testing.T) {
	var u undoList
	var order []string
	u.push("mounting the card", func() error { order = append(order, "eject"); return errors.New("busy") })
	u.push("second", func() error { order = append(order, "second"); return nil })
	u.push("third", func() error { order = append(order, "third"); return errors.New("gone") })
	err := u.run()
	if strings.Join(order, " ") != "third second eject" {
		t.Fatalf("order %v", order)
	}
	if err == nil || !strings.Contains(err.Error(), "undoing third: gone") || !strings.Contains(err.Error(), "undoing mounting the card: busy") {
		t.Fatalf("joined error %v", err)
	}
	if err := u.run(); err != nil {
		t.Fatalf("second run: %v", err)
	}
}

// KEEP_ARCHIVES=no: what the verb added goes, what was there stays; a
// verb killed half-way has its downloads deleted by the next one.
func TestArchivesCleanupAndRecover(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "partial"), 0o755)
	os.WriteFile(filepath.Join(dir, "old_1_all.deb"), []byte("old"), 0o644)
	a := &archives{dir: dir}
	if err := a.begin(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "new_2%3a1_all.deb"), []byte("newer"), 0o644)
	os.WriteFile(filepath.Join(dir, "partial", "half.deb"), []byte("x"), 0o644)
	freed, err := a.cleanup()
	if err != nil || freed != 5 {
		t.Fatalf("cleanup freed %d %v", freed, err)
	}
	if got := ls(t, dir); got != "old_1_all.deb partial" {
		t.Fatalf("left %q", got)
	}
	if got := ls(t, filepath.Join(dir, "partial")); got != "" {
		t.Fatalf("partial left %q", got)
	}
	// Killed: the marker stays; the next verb's recover deletes the new.
	if err := a.begin(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "killed_1_all.deb"), []byte("k"), 0o644)
	b := &archives{dir: dir}
	if err := b.recover(); err != nil {
		t.Fatal(err)
	}
	if got := ls(t, dir); got != "old_1_all.deb partial" {
		t.Fatalf("after recover %q", got)
	}
	// KEEP_ARCHIVES=yes keeps everything.
	k := &archives{dir: dir, keep: true}
	k.begin()
	os.WriteFile(filepath.Join(dir, "kept_1_all.deb"), []byte("k"), 0o644)
	if _, err := k.cleanup(); err != nil || !strings.Contains(ls(t, dir), "kept_1_all.deb") {
		t.Fatalf("keep: %v %q", err, ls(t, dir))
	}
}

func ls(t *testing.T, dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	sort.Strings(n)
	return strings.Join(n, " ")
}

func TestArchiveDirChecks(t *testing.T) {
	rec := &mountset.Record{CardMount: "/overlay", Overlays: []overlay.Mount{{Target: "/usr"}, {Target: "/var"}}}
	for _, bad := range []string{"/var/cache/apt/archives", "/var", "/overlay/ovpkg/layers/0003/tree"} {
		if err := checkArchiveDir(bad, rec, "/"); !errors.Is(err, ErrArchiveDir) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	for _, good := range []string{"/srv/archives", "/overlay/ovpkg/cache/archives", "/variable"} {
		if err := checkArchiveDir(good, rec, "/"); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
	// The card is untrusted: a symbolic link on the way is refused.
	card := t.TempDir()
	os.MkdirAll(filepath.Join(card, "ovpkg"), 0o755)
	os.Symlink("/etc", filepath.Join(card, "ovpkg", "cache"))
	if err := mkdirNoFollow(card, DefaultArchiveDir(card)); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("symlink followed: %v", err)
	}
	os.Remove(filepath.Join(card, "ovpkg", "cache"))
	if err := mkdirNoFollow(card, DefaultArchiveDir(card)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(DefaultArchiveDir(card)); err != nil || !fi.IsDir() {
		t.Fatal("default archive directory not made")
	}
}

// Nothing a transaction replaces or removes is freed on the card (its
// files stay in the layers below, or the base, until commit): the card
// needs the whole size of every new version, the package manager's
// figure (the change) plus every replaced or removed package's size.
func TestCardNeed(t *testing.T) {
	base := []pkgmgr.Package{{Name: "bash", Version: "1", InstalledSize: 1000, State: "installed"}, {Name: "mine", Version: "0", InstalledSize: 10, State: "installed"}}
	merged := []pkgmgr.Package{{Name: "bash", Version: "1", InstalledSize: 1000, State: "installed"}, {Name: "mine", Version: "1", InstalledSize: 300, State: "installed"},
		{Name: "gone", Version: "3", InstalledSize: 4000, State: "installed"}}
	d := &DBs{Base: base, Merged: merged}
	// apt's figure: bash 1000 -> 1100, mine 300 -> 350, gone removed.
	plan := &pkgmgr.Plan{InstallSize: 100 + 50 - 4000, Install: []pkgmgr.Package{{Name: "bash", Old: "1", Version: "2"}, {Name: "mine", Old: "1", Version: "2"}},
		Remove: []pkgmgr.Package{{Name: "gone", Version: "3"}}}
	want := int64(1100 + 350)
	if got := cardNeed(plan, d, 0); got != want+pkgmgr.Overhead(0, want) {
		t.Fatalf("card need %d, want %d (every new version whole) + overhead", got, want+pkgmgr.Overhead(0, want))
	}
}
