package config

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseForms(t *testing.T) {
	in := `# ovpkg
SD_ROOTFS=/mnt/mmcblk0p1/card.img
export MOUNTPOINT="/over lay"
OVERLAY_DIRS='usr etc var'
OTHER=x # trailing comment
NOT A KEY LINE
SD_UUID=first
SD_UUID=second
`
	f, err := Parse("test.conf", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		KeyImage: "/mnt/mmcblk0p1/card.img", KeyMountPoint: "/over lay",
		KeyOverlayDirs: "usr etc var", "OTHER": "x", KeyUUID: "second",
	} {
		if got, ok := f.Get(k); !ok || got != want {
			t.Errorf("%s = %q (%v), want %q", k, got, ok, want)
		}
	}
	if _, ok := f.Get(KeyRunDir); ok {
		t.Error("RUN_DIR found but not set")
	}
	if string(f.Bytes()) != in {
		t.Errorf("round trip changed the file:\n%s", f.Bytes())
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"A='open", `B="open`} {
		_, err := Parse("bad.conf", strings.NewReader(in))
		var ce *Error
		if !errors.As(err, &ce) || ce.Line != 1 {
			t.Errorf("%q: err = %v, want a line-1 *Error", in, err)
		}
	}
}

func TestSetKeepsOtherLines(t *testing.T) {
	f, _ := Parse("x", strings.NewReader("# keep\nA=1\nSD_ROOTFS=/old\nB=2\nSD_ROOTFS=/older\n"))
	f.Set(KeyImage, "/new path/card.img")
	f.Set(KeyUUID, "abc")
	want := "# keep\nA=1\nB=2\nSD_ROOTFS='/new path/card.img'\nSD_UUID=abc\n"
	if got := string(f.Bytes()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestQuoteShellCompatible checks that what Save writes reads back the same
// in sh, the seed's consumer of this file.
func TestQuoteShellCompatible(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, v := range []string{"/plain/path.img", "/with space/x", "it's", `$HOME"q"`, ""} {
		f := &File{}
		f.Set("V", v)
		out, err := exec.Command(sh, "-c", string(f.Bytes())+`printf %s "$V"`).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != v {
			t.Errorf("sh read %q back as %q", v, out)
		}
		g, err := Parse("x", strings.NewReader(string(f.Bytes())))
		if got, _ := g.Get("V"); err != nil || got != v {
			t.Errorf("Parse read %q back as %q (%v)", v, got, err)
		}
	}
}

func TestSaveAtomicAndMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ovpkg.conf")
	f, err := Load(p)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
	f.Set(KeyImage, "/a.img")
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v", st.Mode())
	}
	os.Chmod(p, 0o600)
	f.Set(KeyUUID, "u")
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	st, _ = os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode not kept: %v", st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
	g, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := g.Get(KeyUUID); v != "u" {
		t.Errorf("reloaded UUID %q", v)
	}
}

func TestSaveRefusesSymlinkAndMissingDir(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.conf")
	os.WriteFile(real, []byte("A=1\n"), 0o644)
	link := filepath.Join(dir, "link.conf")
	os.Symlink(real, link)
	f, _ := Load(link)
	f.Set("B", "2")
	if err := f.Save(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Save over symlink: %v", err)
	}
	if b, _ := os.ReadFile(real); string(b) != "A=1\n" {
		t.Errorf("target changed: %q", b)
	}
	g := &File{Path: filepath.Join(dir, "missing", "x.conf")}
	g.Set("A", "1")
	if err := g.Save(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Save into missing dir: %v", err)
	}
}

func TestCheckTrusted(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.conf")
	os.WriteFile(p, []byte("A=1\n"), 0o644)
	if os.Geteuid() == 0 {
		if err := CheckTrusted(p); err != nil {
			t.Errorf("root-owned 0644: %v", err)
		}
	}
	os.Chmod(p, 0o666)
	if err := CheckTrusted(p); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("world-writable: %v", err)
	}
	os.Chmod(p, 0o644)
	l := filepath.Join(dir, "l.conf")
	os.Symlink(p, l)
	if err := CheckTrusted(l); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink: %v", err)
	}
	if os.Geteuid() == 0 {
		os.Chown(p, 1000, 0)
		if err := CheckTrusted(p); err == nil || !strings.Contains(err.Error(), "uid 1000") {
			t.Errorf("non-root owner: %v", err)
		}
	}
	if err := CheckTrusted(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestResolve(t *testing.T) {
	t.Setenv(EnvVar, "")
	if Resolve("") != DefaultPath {
		t.Error("default")
	}
	t.Setenv(EnvVar, "/env.conf")
	if Resolve("") != "/env.conf" || Resolve("/flag.conf") != "/flag.conf" {
		t.Error("precedence flag > env > default")
	}
}

func TestArchiveKeys(t *testing.T) {
	f, err := Parse("c", strings.NewReader("ARCHIVE_DIR=/srv/ovpkg/archives/\nKEEP_ARCHIVES=Yes\nBAD=maybe\nREL=cache\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := f.AbsPath(KeyArchiveDir); err != nil || d != "/srv/ovpkg/archives" {
		t.Errorf("ARCHIVE_DIR: %q %v", d, err)
	}
	if keep, err := f.YesNo(KeyKeepArchives, false); err != nil || !keep {
		t.Errorf("KEEP_ARCHIVES=Yes: %v %v", keep, err)
	}
	if keep, err := f.YesNo("UNSET", false); err != nil || keep {
		t.Errorf("unset: %v %v", keep, err)
	}
	var ce *Error
	if _, err := f.YesNo("BAD", false); !errors.As(err, &ce) || ce.Line != 3 || !strings.Contains(err.Error(), "BAD=maybe is neither yes nor no") {
		t.Errorf("BAD=maybe: %v", err)
	}
	if _, err := f.AbsPath("REL"); !errors.As(err, &ce) || ce.Line != 4 || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative: %v", err)
	}
}

// Every verb reads the config through Load: a file or directory anyone
// but root could change is refused there, whatever the verb.
func TestLoadRefusesUntrusted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make files of other owners")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "c.conf")
	os.WriteFile(p, []byte("RUN_DIR=/tmp/x\n"), 0o644)
	if _, err := Load(p); err != nil {
		t.Fatalf("trusted file: %v", err)
	}
	check := func(what, sub string) {
		t.Helper()
		_, err := Load(p)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), sub) {
			t.Errorf("%s: Load = %v, want a refusal with %q", what, err, sub)
		}
	}
	os.Chown(p, 1000, 1000)
	check("user-owned file", "uid 1000")
	os.Chown(p, 0, 0)
	os.Chmod(p, 0o664)
	check("group-writable file", "chmod go-w")
	os.Chmod(p, 0o644)
	os.Chmod(dir, 0o777)
	check("world-writable directory", "directory writable by group or others")
	os.Chmod(dir, 0o700)
	os.Chown(dir, 1000, 1000)
	check("user-owned directory", "directory owned by uid 1000")
	g := &File{Path: filepath.Join(dir, "new.conf")}
	g.Set("A", "1")
	if err := g.Save(); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Save into a user-owned directory: %v", err)
	}
	os.Chown(dir, 0, 0)
	l := filepath.Join(dir, "l.conf")
	os.Symlink(p, l)
	if _, err := Load(l); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlinked config: %v", err)
	}
}
