package mountset

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/overlay"
)

func mkroot(t *testing.T) string {
	t.Helper()
	r := t.TempDir()
	for _, d := range []string{"usr/local", "etc", "var", "lib", "sbin", "proc", "tmp", "srv", "overlay"} {
		os.MkdirAll(filepath.Join(r, d), 0o755)
	}
	os.Symlink("usr/bin", filepath.Join(r, "bin"))
	os.Symlink("usr/lib64", filepath.Join(r, "lib64"))
	os.WriteFile(filepath.Join(r, "opt"), nil, 0o644) // a file, not a directory
	return r
}

func TestOverlayDirsDefault(t *testing.T) {
	r := mkroot(t)
	got, err := OverlayDirs("", r, "/overlay")
	if err != nil {
		t.Fatal(err)
	}
	// opt is a file, bin and lib64 are links into /usr: skipped.
	if want := []string{"usr", "etc", "var", "sbin", "lib"}; !reflect.DeepEqual(got, want) {
		t.Errorf("default dirs = %v, want %v", got, want)
	}
	// The mount point itself is never overlaid, even by default.
	got, _ = OverlayDirs("", r, filepath.Join(r, "etc"))
	for _, d := range got {
		if d == "etc" {
			t.Error("mount point overlaid")
		}
	}
	if _, err := OverlayDirs("", r, filepath.Join(r, "var/card")); err == nil {
		t.Error("mount point inside a default directory accepted")
	}
}

func TestOverlayDirsExplicit(t *testing.T) {
	r := mkroot(t)
	got, err := OverlayDirs("usr, etc srv  etc", r, "/overlay")
	if err != nil || !reflect.DeepEqual(got, []string{"usr", "etc", "srv"}) {
		t.Fatalf("= %v, %v", got, err)
	}
	for value, msg := range map[string]string{
		"usr proc":      "never overlaid",
		"tmp":           "never overlaid",
		"lost+found":    "never overlaid",
		"bin":           "symbolic link to usr/bin",
		"opt":           "not a directory",
		"nosuch":        "no such file",
		"usr usr/local": "overlap",
		"../etc":        "not a directory below the root",
		"overlay":       "mount point",
	} {
		_, err := OverlayDirs(value, r, filepath.Join(r, "overlay"))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", value, err, msg)
		}
	}
	if got, err := OverlayDirs("/usr/local/", r, "/overlay"); err != nil || !reflect.DeepEqual(got, []string{"usr/local"}) {
		t.Errorf("nested dir: %v %v", got, err)
	}
}

const tableText = `22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
30 22 7:3 / /overlay rw,noatime - ext2 /dev/loop3 rw
31 22 0:40 / /usr rw,nodev - overlay ovpkg rw,lowerdir+=/usr,upperdir=/overlay/ovpkg/layers/0001/tree/usr,workdir=/overlay/ovpkg/layers/0001/work/usr
`

func TestRecordState(t *testing.T) {
	tab, err := mount.ReadTable(strings.NewReader(tableText))
	if err != nil {
		t.Fatal(err)
	}
	ov := func(d string) overlay.Mount {
		return overlay.Mount{Target: "/" + d, Lowers: []string{"/" + d}, Upper: "/overlay/ovpkg/layers/0001/tree/" + d, Work: "/overlay/ovpkg/layers/0001/work/" + d}
	}
	r := &Record{Loop: "/dev/loop3", CardMount: "/overlay", Overlays: []overlay.Mount{ov("usr")}}
	if r.state(tab); r.State != StateMounted {
		t.Errorf("state = %s", r.State)
	}
	if devs := r.devices(tab); len(devs) != 2 {
		t.Errorf("devices = %v", devs)
	}
	r.Overlays = append(r.Overlays, ov("etc"))
	if up := r.state(tab); r.State != StatePartial || len(up) != 1 {
		t.Errorf("state = %s, up %v", r.State, up)
	}
	r.Overlays = []overlay.Mount{ov("etc")}
	if r.state(tab); r.State != StateCardOnly {
		t.Errorf("state = %s", r.State)
	}
	r.Loop = "/dev/loop9"
	if r.state(tab); r.State != StateGone {
		t.Errorf("state = %s", r.State)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if r, err := readRecord(dir); r != nil || err != nil {
		t.Fatalf("no record: %v %v", r, err)
	}
	in := &Record{Image: "/a.img", Loop: "/dev/loop1", Dirs: []string{"usr"}, State: StateMounted, AlreadyMounted: true,
		Overlays: []overlay.Mount{{Target: "/usr", Lowers: []string{"/usr"}, Upper: "/u", Work: "/w"}}}
	if err := writeRecord(dir, in); err != nil {
		t.Fatal(err)
	}
	out, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if out.State != "" || out.AlreadyMounted || out.Image != "/a.img" || out.Version != recordVersion || len(out.Overlays) != 1 {
		t.Errorf("round trip = %+v", out)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	os.WriteFile(recordPath(dir), []byte("{"), 0o644)
	if _, err := readRecord(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged record: %v", err)
	}
}

const lockHelperEnv = "OVPKG_LOCK_HELPER_RUNDIR"

func TestLockSecondProcessFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Nested in one process: shared.
	unlock2, err := lockDir(dir)
	if err != nil {
		t.Fatalf("nested Lock: %v", err)
	}
	unlock2()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+dir)
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "another ovpkg command is running") || !strings.Contains(string(out), "PID "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second process: %s", out)
	}
	unlock()
	cmd = exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+dir)
	out, _ = cmd.CombinedOutput()
	if !strings.Contains(string(out), "LOCKED OK") {
		t.Errorf("after unlock: %s", out)
	}
}

func TestLockHelper(t *testing.T) {
	dir := os.Getenv(lockHelperEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	unlock, err := lockDir(dir)
	if err != nil {
		var le *LockError
		if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
			t.Fatalf("not a LockError: %v", err)
		}
		os.Stdout.WriteString(err.Error() + "\n")
		return
	}
	unlock()
	os.Stdout.WriteString("LOCKED OK\n")
}
