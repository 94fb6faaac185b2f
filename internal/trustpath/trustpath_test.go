package trustpath

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

func wantRefused(t *testing.T, err error, sub string) {
	t.Helper()
	if err == nil || !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), sub) {
		t.Errorf("err = %v, want a refusal containing %q", err, sub)
	}
}

func TestDirResolvesAndChecks(t *testing.T) {
	nstest.RequireRoot(t)
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "a/b"), 0o755)
	os.Symlink("a/b", filepath.Join(d, "link"))
	got, err := Dir(d + "/link/../b/.")
	if err != nil || got != filepath.Join(d, "a/b") {
		t.Fatalf("Dir through a root-owned link = %q, %v", got, err)
	}
	if _, err := Dir(filepath.Join(d, "nope/x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := Dir("relative"); err == nil {
		t.Error("relative path accepted")
	}

	// A directory someone else owns anywhere on the way.
	os.Chown(filepath.Join(d, "a"), 1000, 1000)
	_, err = Dir(filepath.Join(d, "a/b"))
	wantRefused(t, err, "owned by uid 1000")
	os.Chown(filepath.Join(d, "a"), 0, 0)

	// Group/world-writable without the sticky bit, and with it.
	os.Chmod(filepath.Join(d, "a"), 0o777)
	_, err = Dir(filepath.Join(d, "a/b"))
	wantRefused(t, err, "chmod go-w")
	os.Chmod(filepath.Join(d, "a"), os.ModeSticky|0o777)
	if _, err := Dir(filepath.Join(d, "a/b")); err != nil {
		t.Errorf("root-owned entry in a sticky directory: %v", err)
	}
	// In a sticky directory, an entry of another user is not trusted.
	os.Chown(filepath.Join(d, "a/b"), 1000, 1000)
	_, err = Dir(filepath.Join(d, "a/b"))
	wantRefused(t, err, "owned by uid 1000")
	os.Chown(filepath.Join(d, "a/b"), 0, 0)

	// A symbolic link owned by another user is not followed.
	os.Lchown(filepath.Join(d, "link"), 1000, 1000)
	_, err = Dir(filepath.Join(d, "link"))
	wantRefused(t, err, "symbolic link owned by uid 1000")

	// A loop of links ends.
	os.Symlink("loop2", filepath.Join(d, "loop1"))
	os.Symlink("loop1", filepath.Join(d, "loop2"))
	if _, err := Dir(filepath.Join(d, "loop1")); !errors.Is(err, unix.ELOOP) {
		t.Errorf("link loop: %v", err)
	}
	os.WriteFile(filepath.Join(d, "file"), nil, 0o644)
	if _, err := Dir(filepath.Join(d, "file/x")); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("file as directory: %v", err)
	}
}

func TestOpenChecksTheFile(t *testing.T) {
	nstest.RequireRoot(t)
	d := t.TempDir()
	p := filepath.Join(d, "f")
	os.WriteFile(p, []byte("data"), 0o644)
	b, err := ReadFile(p, 10)
	if err != nil || string(b) != "data" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	_, err = ReadFile(p, 3)
	wantRefused(t, err, "larger than 3 bytes")

	victim := filepath.Join(d, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	os.Symlink(victim, filepath.Join(d, "sl"))
	_, err = Open(filepath.Join(d, "sl"), unix.O_RDWR|unix.O_CREAT, 0o600)
	wantRefused(t, err, "symbolic link")
	_, err = OpenIn(d, "sl", unix.O_RDWR|unix.O_CREAT, 0o600)
	wantRefused(t, err, "symbolic link")
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("victim changed: %q", b)
	}

	// A FIFO is refused without blocking.
	unix.Mkfifo(filepath.Join(d, "fifo"), 0o644)
	_, err = ReadFile(filepath.Join(d, "fifo"), 10)
	wantRefused(t, err, "not a regular file")

	os.Chmod(p, 0o666)
	_, err = ReadFile(p, 10)
	wantRefused(t, err, "chmod go-w")
	os.Chmod(p, 0o644)
	os.Chown(p, 1000, 0)
	_, err = ReadFile(p, 10)
	wantRefused(t, err, "uid 1000")
	os.Chown(p, 0, 0)

	// A second link: fine to read, refused for writing.
	os.Link(p, filepath.Join(d, "hard"))
	if _, err := ReadFile(p, 10); err != nil {
		t.Errorf("read of a linked file: %v", err)
	}
	_, err = OpenIn(d, "hard", unix.O_RDWR, 0)
	wantRefused(t, err, "2 hard links")
	_, err = OpenIn(d, "../x", unix.O_RDONLY, 0)
	wantRefused(t, err, "not a file name")
}
