package overlay

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/mount"
)

// The root tests re-run this test binary inside a private mount namespace
// (exec.Cmd with Unshareflags; the test process itself never unshares) and
// do their mounting there, on a tmpfs under a nstest.TempDir.

const helperEnv = "OVPKG_OVERLAY_NS_HELPER"

func runInNamespace(t *testing.T, name string) {
	t.Helper()
	nstest.RequireRoot(t)
	dir := nstest.TempDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestNamespaceHelper$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+name, "OVPKG_NS_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "HELPER OK") {
		t.Fatalf("%s in namespace: %v\n%s", name, err, out)
	}
}

func TestStackRollbackNS(t *testing.T) { runInNamespace(t, "rollback") }
func TestStackLegacyNS(t *testing.T)   { runInNamespace(t, "legacy") }
func TestUnstackBusyNS(t *testing.T)   { runInNamespace(t, "busy") }
func TestUpperInUseNS(t *testing.T)    { runInNamespace(t, "inuse") }
func TestManyLayersNS(t *testing.T)    { runInNamespace(t, "layers") }

func TestNamespaceHelper(t *testing.T) {
	name := os.Getenv(helperEnv)
	if name == "" {
		t.Skip("helper process only")
	}
	base := os.Getenv("OVPKG_NS_DIR")
	if err := unix.Mount("t", base, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(base, unix.MNT_DETACH) // namespace teardown would do it anyway
	mk := func(n int) []Mount {
		var ms []Mount
		for i := 0; i < n; i++ {
			d := filepath.Join(base, fmt.Sprintf("d%d", i))
			for _, p := range []string{d, d + ".up", d + ".work"} {
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			os.WriteFile(filepath.Join(d, "base"), []byte("base"), 0o644)
			ms = append(ms, Mount{Target: d, Lowers: []string{d}, Upper: d + ".up", Work: d + ".work"})
		}
		return ms
	}
	overlays := func() int {
		tab, err := mount.Self()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range tab.Under(base) {
			if m.FSType == FSType {
				n++
			}
		}
		return n
	}
	switch name {
	case "rollback":
		ms := mk(5)
		err := Stack(ms, StackOptions{BeforeEach: func(i int, m Mount) error {
			if i == 2 {
				return unix.EIO
			}
			return nil
		}})
		var se *StackError
		if !errors.As(err, &se) || se.Index != 2 || se.UndoErr != nil || !errors.Is(err, unix.EIO) {
			t.Fatalf("Stack = %v", err)
		}
		if n := overlays(); n != 0 {
			t.Fatalf("%d overlays left after rollback", n)
		}
		if err := Stack(ms, StackOptions{}); err != nil {
			t.Fatal(err)
		}
		if n := overlays(); n != 5 {
			t.Fatalf("%d overlays, want 5", n)
		}
		tab, _ := mount.Self()
		m := tab.Lookup(ms[0].Target)
		for _, want := range []string{"redirect_dir=nofollow"} { // xino shows only when layers span filesystems
			if !strings.Contains(m.VFSOptions, want) {
				t.Errorf("super options %q lack %s", m.VFSOptions, want)
			}
		}
		if !strings.Contains(m.Options, "nodev") || m.Source != Source {
			t.Errorf("mount options %q source %q", m.Options, m.Source)
		}
		os.WriteFile(filepath.Join(ms[0].Target, "new"), []byte("x"), 0o644)
		if _, err := os.Stat(filepath.Join(ms[0].Upper, "new")); err != nil {
			t.Errorf("write did not land in the upper: %v", err)
		}
		if err := Unstack(ms); err != nil {
			t.Fatal(err)
		}
		if n := overlays(); n != 0 {
			t.Fatalf("%d overlays left after Unstack", n)
		}
		if _, err := os.Stat(filepath.Join(ms[0].Target, "new")); err == nil {
			t.Error("base changed")
		}
	case "legacy":
		forceLegacy = true
		ms := mk(2)
		if err := Stack(ms, StackOptions{}); err != nil {
			t.Fatal(err)
		}
		if n := overlays(); n != 2 {
			t.Fatalf("%d overlays", n)
		}
		if b, err := os.ReadFile(filepath.Join(ms[1].Target, "base")); err != nil || string(b) != "base" {
			t.Errorf("lower not visible: %q %v", b, err)
		}
		if err := Unstack(ms); err != nil {
			t.Fatal(err)
		}
	case "busy":
		ms := mk(3)
		if err := Stack(ms, StackOptions{}); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(ms[0].Target, "base")) // pins the oldest overlay
		if err != nil {
			t.Fatal(err)
		}
		err = Unstack(ms)
		if !errors.Is(err, unix.EBUSY) {
			t.Fatalf("Unstack with an open file = %v", err)
		}
		if n := overlays(); n != 3 {
			t.Fatalf("after a refused Unstack %d overlays, want 3 (restored)", n)
		}
		f.Close()
		if err := Unstack(ms); err != nil {
			t.Fatal(err)
		}
	case "inuse":
		ms := mk(2)
		if err := Stack(ms[:1], StackOptions{}); err != nil {
			t.Fatal(err)
		}
		other := ms[1]
		other.Upper = ms[0].Upper
		err := Stack([]Mount{other}, StackOptions{})
		if !errors.Is(err, unix.EBUSY) {
			t.Fatalf("shared upper = %v", err)
		}
		if n := overlays(); n != 1 {
			t.Fatalf("%d overlays", n)
		}
		Unstack(ms[:1])
	case "layers":
		// 300 lower layers: far beyond one page of mount(2) options.
		ms := mk(1)
		m := ms[0]
		var lows []string
		for i := 0; i < 300; i++ {
			p := filepath.Join(base, "layers", fmt.Sprintf("%04d", i), "tree", "usr")
			os.MkdirAll(p, 0o755)
			os.WriteFile(filepath.Join(p, fmt.Sprintf("f%d", i)), nil, 0o644)
			lows = append([]string{p}, lows...)
		}
		// overlayfs allows at most 500 lower layers.
		m.Lowers = append(lows, m.Target)
		if err := Stack([]Mount{m}, StackOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"f0", "f299", "base"} {
			if _, err := os.Stat(filepath.Join(m.Target, f)); err != nil {
				t.Errorf("%s not visible through 300 layers: %v", f, err)
			}
		}
		if err := Unstack([]Mount{m}); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown helper %q", name)
	}
	if !t.Failed() {
		fmt.Println("HELPER OK")
	}
}
