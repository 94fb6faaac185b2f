package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "stack")
	if err := Write(p, []byte("0001\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("0001\n0002\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "0001\n0002\n" || st.Mode().Perm() != 0o600 {
		t.Errorf("got %q mode %v", b, st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestWriteMissingDirKeepsCause(t *testing.T) {
	err := Write(filepath.Join(t.TempDir(), "no", "x"), nil, 0o644)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

func TestWriteOntoDirectoryFailsAndKeepsIt(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "d")
	os.Mkdir(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "keep"), []byte("x"), 0o644)
	if err := Write(sub, []byte("y"), 0o644); err == nil {
		t.Fatal("replacing a directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(sub, "keep")); err != nil {
		t.Errorf("directory content lost: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp file left: %v", ents)
	}
}
