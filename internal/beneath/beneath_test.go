package beneath

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// scene: root/{a/b/file, link -> outside, a/dirlink -> outside}, outside/{victim, NAME/tree}
func scene(t *testing.T) (root, outside string) {
	t.Helper()
	d := t.TempDir()
	root, outside = filepath.Join(d, "card"), filepath.Join(d, "host")
	for _, p := range []string{"card/a/b", "host/NAME/tree"} {
		if err := os.MkdirAll(filepath.Join(d, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "a/b/file"), []byte("card"), 0o644)
	os.WriteFile(filepath.Join(outside, "victim"), []byte("precious"), 0o644)
	os.Symlink(outside, filepath.Join(root, "link"))
	os.Symlink(outside, filepath.Join(root, "a/dirlink"))
	os.Symlink(filepath.Join(outside, "victim"), filepath.Join(root, "a/filelink"))
	os.Symlink("b", filepath.Join(root, "a/inside")) // a link that stays inside: refused all the same
	return root, outside
}

func both(t *testing.T, fn func(t *testing.T)) {
	t.Run("openat2", func(t *testing.T) { fn(t) })
	t.Run("walk", func(t *testing.T) {
		ForceWalk = true
		defer func() { ForceWalk = false }()
		fn(t)
	})
}

func victimIntact(t *testing.T, outside string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(outside, "victim"))
	if err != nil || !bytes.Equal(b, []byte("precious")) {
		t.Errorf("victim changed: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "NAME/tree")); err != nil {
		t.Errorf("victim dir gone: %v", err)
	}
}

func TestRefusesLinksAndEscapes(t *testing.T) {
	both(t, func(t *testing.T) {
		root, outside := scene(t)
		r, err := OpenRoot(root)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if b, err := r.ReadFile("a/b/file", 100); err != nil || string(b) != "card" {
			t.Fatalf("plain read: %q %v", b, err)
		}
		for _, p := range []string{"link/victim", "a/filelink", "a/dirlink/victim", "a/inside/file"} {
			_, err := r.ReadFile(p, 100)
			if !errors.Is(err, unix.ELOOP) {
				t.Errorf("ReadFile(%s) = %v, want ELOOP", p, err)
			}
		}
		for _, p := range []string{"../host/victim", "/etc/passwd", "a/../../host/victim", "a//b", ""} {
			if _, err := r.ReadFile(p, 100); !errors.Is(err, ErrBadPath) {
				t.Errorf("ReadFile(%q) = %v, want ErrBadPath", p, err)
			}
		}
		if _, err := r.Dir("link"); !errors.Is(err, unix.ELOOP) {
			t.Errorf("Dir(link) = %v", err)
		}
		if ok, err := r.IsDir("missing"); ok || err != nil {
			t.Errorf("IsDir(missing) = %v %v", ok, err)
		}
		if err := r.MkdirAll("link/NAME/tree/x", 0o755); !errors.Is(err, unix.ELOOP) {
			t.Errorf("MkdirAll through a link = %v", err)
		}
		if err := r.MkdirAll("a/dirlink/new", 0o755); !errors.Is(err, unix.ELOOP) {
			t.Errorf("MkdirAll through a link = %v", err)
		}
		if err := r.MkdirAll("a/new/deeper", 0o755); err != nil {
			t.Errorf("MkdirAll: %v", err)
		}
		if err := r.WriteFile("link/victim", []byte("x"), 0o644); !errors.Is(err, unix.ELOOP) {
			t.Errorf("WriteFile through a link = %v", err)
		}
		if err := r.Append("a/filelink", []byte("x"), 0o644); !errors.Is(err, unix.ELOOP) {
			t.Errorf("Append to a link = %v", err)
		}
		if err := r.RemoveAll("link/NAME"); !errors.Is(err, unix.ELOOP) {
			t.Errorf("RemoveAll through a link = %v", err)
		}
		// RemoveAll of a directory holding links removes the links only.
		if err := r.RemoveAll("a"); err != nil {
			t.Errorf("RemoveAll(a) = %v", err)
		}
		if _, err := os.Lstat(filepath.Join(root, "a")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a still there: %v", err)
		}
		// The root-level link itself is removed, not followed.
		if err := r.RemoveAll("link"); err != nil {
			t.Errorf("RemoveAll(link) = %v", err)
		}
		victimIntact(t, outside)
	})
}

func TestWriteReadAppendRename(t *testing.T) {
	both(t, func(t *testing.T) {
		root, outside := scene(t)
		r, err := OpenRoot(root)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		// WriteFile over a link replaces the link.
		if err := r.WriteFile("a/filelink", []byte("new"), 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := r.Lstat("a/filelink")
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o777 != 0o600 {
			t.Errorf("after WriteFile: %+v %v", st, err)
		}
		if err := r.Append("a/log", []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := r.Append("a/log", []byte("2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, _ := r.ReadFile("a/log", 10); string(b) != "1\n2\n" {
			t.Errorf("log %q", b)
		}
		if _, err := r.ReadFile("a/log", 3); !errors.Is(err, unix.EFBIG) {
			t.Errorf("oversized read: %v", err)
		}
		if err := r.Rename("a/log", "a/b/log2"); err != nil {
			t.Fatal(err)
		}
		ents, err := r.ReadDir("a/b")
		if err != nil || len(ents) != 2 {
			t.Errorf("ReadDir: %v %v", ents, err)
		}
		if _, err := r.ReadDir("a/dirlink"); !errors.Is(err, unix.ELOOP) {
			t.Errorf("ReadDir through a link: %v", err)
		}
		if err := r.SameDir("a/b", filepath.Join(root, "a/b")); err != nil {
			t.Errorf("SameDir: %v", err)
		}
		if err := r.SameDir("a/b", outside); !errors.Is(err, unix.EXDEV) {
			t.Errorf("SameDir of another dir: %v", err)
		}
		victimIntact(t, outside)
	})
}

func TestErrorMessages(t *testing.T) {
	root, _ := scene(t)
	r, _ := OpenRoot(root)
	defer r.Close()
	_, err := r.Dir("link")
	want := filepath.Join(root, "link") + ": open: a symbolic link on the way (ovpkg never follows links below " + root + ")"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}
