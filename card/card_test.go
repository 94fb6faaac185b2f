package card

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestInitOpenLayers(t *testing.T) {
	root := t.TempDir()
	l, err := Init(root, []string{"usr", "etc", "usr/local"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "ovpkg", "FORMAT"))
	if err != nil || string(b) != "ovpkg-card 1\n" {
		t.Fatalf("FORMAT = %q, %v", b, err)
	}
	for _, p := range []string{"ovpkg/layers/0001/tree/usr", "ovpkg/layers/0001/tree/etc", "ovpkg/layers/0001/work/usr",
		"ovpkg/layers/0001/work/usr%2Flocal", "ovpkg/layers/0001/tree/usr/local"} {
		if st, err := os.Stat(filepath.Join(root, p)); err != nil || !st.IsDir() {
			t.Errorf("%s missing: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, ".ovpkg.init")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary init dir left: %v", err)
	}
	if _, err := Init(root, nil); err == nil {
		t.Error("second Init succeeded")
	}
	l2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := l2.Layers()
	if err != nil || !reflect.DeepEqual(ids, []string{"0001"}) {
		t.Fatalf("Layers = %v, %v", ids, err)
	}
	if l.Upper("0001", "usr") != filepath.Join(root, "ovpkg/layers/0001/tree/usr") {
		t.Errorf("Upper = %s", l.Upper("0001", "usr"))
	}
}

func TestStackSeveralLayers(t *testing.T) {
	root := t.TempDir()
	l, err := Init(root, []string{"usr", "etc"})
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := l.Layers()
	id2 := NextID(ids)
	if id2 != "0002" {
		t.Fatalf("NextID = %s", id2)
	}
	if err := l.AddLayer(id2, []string{"usr"}); err != nil {
		t.Fatal(err)
	}
	// Not visible until the stack names it.
	if top, _ := l.TopLayer(); top != "0001" {
		t.Errorf("top before WriteStack = %s", top)
	}
	if err := l.WriteStack([]string{"0001", id2}); err != nil {
		t.Fatal(err)
	}
	specs, err := l.Specs([]string{"usr", "etc"})
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].Upper != l.Upper("0002", "usr") || !reflect.DeepEqual(specs[0].Lowers, []string{l.Upper("0001", "usr")}) {
		t.Errorf("usr spec = %+v", specs[0])
	}
	if specs[0].Work != l.Work("0002", "usr") {
		t.Errorf("work = %s", specs[0].Work)
	}
	// etc is missing from layer 2 until EnsureDirs.
	if _, err := os.Stat(specs[1].Upper); err == nil {
		t.Error("etc upper exists in layer 2 before EnsureDirs")
	}
	if err := l.EnsureDirs("0002", []string{"etc"}); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteStack([]string{"0001", "0003"}); err == nil {
		t.Error("WriteStack accepted a missing layer")
	}
	if err := l.WriteStack(nil); err == nil {
		t.Error("WriteStack accepted an empty stack")
	}
	if ids, _ := l.Layers(); !reflect.DeepEqual(ids, []string{"0001", "0002"}) {
		t.Errorf("stack changed by a refused write: %v", ids)
	}
}

func TestOpenRefuses(t *testing.T) {
	root := t.TempDir()
	if _, err := Open(root); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("empty card: %v", err)
	}
	l, err := Init(root, []string{"usr"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(l.FormatFile(), []byte("ovpkg-card 7\n"), 0o644)
	_, err = Open(root)
	if !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("newer format: %v", err)
	}
	t.Log(err)
	os.WriteFile(l.FormatFile(), []byte("hello\n"), 0o644)
	if _, err := Open(root); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage format: %v", err)
	}
	os.WriteFile(l.FormatFile(), []byte("ovpkg-card 1\n"), 0o644)
	os.WriteFile(l.StackFile(), []byte("0001\n0009\n"), 0o644)
	if _, err := Open(root); !errors.Is(err, ErrCorrupt) {
		t.Errorf("stack naming a missing layer: %v", err)
	}
	os.WriteFile(l.StackFile(), []byte("../x\n"), 0o644)
	if _, err := Open(root); !errors.Is(err, ErrCorrupt) {
		t.Errorf("stack with a path: %v", err)
	}
}

func TestCheckDir(t *testing.T) {
	for _, d := range []string{"usr", "usr/local", "lib64"} {
		if err := CheckDir(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	for _, d := range []string{"", ".", "/usr", "usr/", "../etc", "..", "usr/../etc", "a//b"} {
		if err := CheckDir(d); !errors.Is(err, ErrBadDir) {
			t.Errorf("%q accepted", d)
		}
	}
	if EscapeDir("a/b%c") != "a%2Fb%25c" {
		t.Error(EscapeDir("a/b%c"))
	}
}
