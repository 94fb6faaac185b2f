package image

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// onlyFiles lists dir's entries (to prove no temporary file is left).
func onlyFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "old.img")
	os.WriteFile(existing, []byte("precious"), 0o644)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	link := filepath.Join(dir, "link.img")
	os.Symlink(existing, link)
	cases := []struct {
		name, path string
		opt        Options
		want       string
		is         error
	}{
		{"exists", existing, Options{Size: 8 * MiB}, "already exists (use --force", fs.ErrExist},
		{"directory", sub, Options{Size: 8 * MiB, Force: true}, "is a directory", syscall.EISDIR},
		{"missing parent", filepath.Join(dir, "nope", "card.img"), Options{Size: 8 * MiB}, "does not exist (create it first", fs.ErrNotExist},
		{"parent is a file", filepath.Join(existing, "card.img"), Options{Size: 8 * MiB}, "not a directory", syscall.ENOTDIR},
		{"symlink", link, Options{Size: 8 * MiB, Force: true}, "symbolic link", nil},
		{"too small", filepath.Join(dir, "a.img"), Options{Size: 3 * MiB}, "below the smallest", nil},
		{"too large", filepath.Join(dir, "a.img"), Options{Size: 4 * TiB}, "above the largest", nil},
		{"odd size", filepath.Join(dir, "a.img"), Options{Size: 8*MiB + 512}, "whole number of MiB", nil},
		{"label", filepath.Join(dir, "a.img"), Options{Size: 8 * MiB, Label: "seventeen-bytes!!"}, "longer than 16", nil},
		{"fs", filepath.Join(dir, "a.img"), Options{Size: 8 * MiB, FS: "xfs"}, "not supported", nil},
		{"table", filepath.Join(dir, "a.img"), Options{Size: 8 * MiB, Table: "sun"}, "not supported", nil},
		{"uuid", filepath.Join(dir, "a.img"), Options{Size: 8 * MiB, UUID: "nope"}, "UUID", nil},
	}
	for _, c := range cases {
		_, err := Create(c.path, c.opt)
		if err == nil {
			t.Errorf("%s: Create succeeded", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q, want one line containing %q", c.name, err, c.want)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: error %q is not %v", c.name, err, c.is)
		}
	}
	if b, _ := os.ReadFile(existing); string(b) != "precious" {
		t.Errorf("existing file changed: %q", b)
	}
	if got := onlyFiles(t, dir); strings.Join(got, " ") != "link.img old.img sub" {
		t.Errorf("directory holds %v, want only what was there", got)
	}
}

func TestCreateForceReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "card.img")
	os.WriteFile(path, []byte("old"), 0o644)
	info, err := Create(path, Options{Size: 8 * MiB, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Size() != 8*MiB || st.Mode().Perm() != 0o600 {
		t.Errorf("replaced image: size %d mode %v", st.Size(), st.Mode())
	}
	if info.Label != DefaultLabel || info.FSType != "ext2" || info.Table != TableDOS || len(info.UUID) != 36 {
		t.Errorf("defaults: %+v", info)
	}
	if got := onlyFiles(t, dir); len(got) != 1 {
		t.Errorf("directory holds %v", got)
	}
}

func TestPendingAbortAndRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "card.img")
	p, err := Prepare(path, Options{Size: 8 * MiB})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Prepare published the image early: %v", err)
	}
	p.Abort()
	if got := onlyFiles(t, dir); len(got) != 0 {
		t.Errorf("Abort left %v", got)
	}
	// Someone else creates the file between Prepare and Commit: not replaced.
	p, err = Prepare(path, Options{Size: 8 * MiB})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("theirs"), 0o644)
	if _, err := p.Commit(); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Commit over a new file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "theirs" || len(onlyFiles(t, dir)) != 1 {
		t.Errorf("Commit replaced or left files: %q %v", b, onlyFiles(t, dir))
	}
}

func TestCreateSparseAndFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.img")
	start := time.Now()
	info, err := Create(path, Options{Size: 16 * GiB})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	syscall.Stat(path, &st)
	if st.Size != 16*GiB || st.Blocks*512 > 8*MiB {
		t.Errorf("16 GiB image: size %d, %d bytes on disk; want sparse (< 8 MiB)", st.Size, st.Blocks*512)
	}
	if info.DiskUsage != st.Blocks*512 {
		t.Errorf("Info.DiskUsage %d, st_blocks say %d", info.DiskUsage, st.Blocks*512)
	}
	// Not a timing test, a sanity bound: zero-filling 16 GiB takes tens of seconds.
	if took > 5*time.Second {
		t.Errorf("16 GiB image took %v; it must not write data", took)
	}
}
