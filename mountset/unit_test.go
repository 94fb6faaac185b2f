package mountset

import (
	"encoding/json"
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
	in := goodRecord()
	in.State, in.AlreadyMounted = StateMounted, true
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
	os.WriteFile(recordPath(dir), []byte("{"), 0o600)
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

func goodRecord() *Record {
	return &Record{Config: "/etc/ovpkg.conf", Image: "/a.img", Loop: "/dev/loop1", CardMount: "/overlay", Root: "/", Dirs: []string{"usr"},
		Layers: []string{"0001", "0002"}, TopLayer: "0002", Tree: "/overlay/ovpkg/layers/0002/tree",
		Overlays: []overlay.Mount{{Target: "/usr", Lowers: []string{"/overlay/ovpkg/layers/0001/tree/usr", "/usr"},
			Upper: "/overlay/ovpkg/layers/0002/tree/usr", Work: "/overlay/ovpkg/layers/0002/work/usr"}},
		Detached: []DetachedOverlay{{Target: "/usr", Upper: "/overlay/ovpkg/layers/0001/tree/usr", Layers: []string{"0001"}}},
	}
}

// The record decides what eject unmounts and what a transaction
// restacks: every field is checked as untrusted input.
func TestRecordValidation(t *testing.T) {
	if err := goodRecord().validate(); err == nil {
		t.Fatal("version 0 accepted")
	}
	ok := goodRecord()
	ok.Version = 1
	if err := ok.validate(); err != nil {
		t.Fatalf("good record: %v", err)
	}
	for name, spoil := range map[string]func(r *Record){
		"relative image":      func(r *Record) { r.Image = "a.img" },
		"loop not a loop":     func(r *Record) { r.Loop = "/dev/sda" },
		"loop path trick":     func(r *Record) { r.Loop = "/dev/loop1/../sda" },
		"card mount /":        func(r *Record) { r.CardMount = "/" },
		"unclean root":        func(r *Record) { r.Root = "/r/../etc" },
		"dir escapes":         func(r *Record) { r.Dirs = []string{"../etc"} },
		"layer id escapes":    func(r *Record) { r.Layers = []string{"0001", ".."} },
		"top mismatch":        func(r *Record) { r.TopLayer = "0001" },
		"tree elsewhere":      func(r *Record) { r.Tree = "/home/u/tree" },
		"upper off the card":  func(r *Record) { r.Overlays[0].Upper = "/home/u/owned" },
		"work off the card":   func(r *Record) { r.Overlays[0].Work = "/tmp/w" },
		"lower off the card":  func(r *Record) { r.Overlays[0].Lowers[0] = "/home/u/lower" },
		"target off the root": func(r *Record) { r.Root = "/srv/root" },
		"no lowers":           func(r *Record) { r.Overlays[0].Lowers = nil },
		"detached upper":      func(r *Record) { r.Detached[0].Upper = "/etc" },
		"control char":        func(r *Record) { r.Image = "/a\n.img" },
		"negative offset":     func(r *Record) { r.Offset = -1 },
		"unwritten off card": func(r *Record) {
			r.FlushFailed = &FlushFailure{Unwritten: []string{"/etc/shadow"}}
		},
	} {
		r := goodRecord()
		r.Version = 1
		spoil(r)
		if err := r.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		// Read back from RUN_DIR: refused with the record's path.
		dir := t.TempDir()
		b, _ := json.Marshal(r)
		os.WriteFile(recordPath(dir), b, 0o600)
		if _, err := readRecord(dir); err == nil || !strings.Contains(err.Error(), "not one ovpkg wrote") {
			t.Errorf("%s: readRecord = %v", name, err)
		}
	}
}

// RUN_DIR and its state files: created root-owned 0700, symbolic links
// and foreign owners refused, a planted link never followed, the lock
// never truncated.
func TestRunDirTrust(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make files of other owners")
	}
	base := t.TempDir()
	rd := filepath.Join(base, "sub", "run")
	unlock, err := lockDir(rd)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if st, _ := os.Lstat(rd); st.Mode().Perm() != 0o700 {
		t.Errorf("RUN_DIR created with mode %v", st.Mode())
	}
	if st, _ := os.Lstat(filepath.Join(rd, LockName)); st.Size() != holderSize || st.Mode().Perm() != 0o600 {
		t.Errorf("lock: size %d mode %v", st.Size(), st.Mode())
	}
	// An older ovpkg's 0755 is tightened.
	os.Chmod(rd, 0o755)
	if _, err := checkRunDir(rd, false); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Lstat(rd); st.Mode().Perm() != 0o700 {
		t.Errorf("0755 RUN_DIR not tightened: %v", st.Mode())
	}
	refused := func(what, sub string) {
		t.Helper()
		_, err := checkRunDir(rd, true)
		if err == nil || !errors.Is(err, ErrRunDir) || !strings.Contains(err.Error(), sub) {
			t.Errorf("%s: %v, want a refusal with %q", what, err, sub)
		}
		if _, err := lockDir(rd); err == nil {
			t.Errorf("%s: lock taken", what)
		}
		if _, err := readRecord(rd); err == nil {
			t.Errorf("%s: record read", what)
		}
	}
	os.Chmod(rd, 0o777)
	refused("world-writable", "writable by group or others")
	os.Chmod(rd, 0o700)
	os.Chown(rd, 1000, 1000)
	refused("user-owned", "owned by uid 1000")
	os.Chown(rd, 0, 0)
	os.Chown(filepath.Dir(rd), 1000, 1000)
	refused("user-owned parent", "someone other than root")
	os.Chown(filepath.Dir(rd), 0, 0)
	os.Rename(rd, rd+".real")
	os.Symlink(rd+".real", rd)
	refused("symbolic link", "symbolic link")
	os.Remove(rd)
	os.Rename(rd+".real", rd)

	// Planted links in RUN_DIR are never followed.
	victim := filepath.Join(base, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	os.Remove(filepath.Join(rd, LockName))
	os.Symlink(victim, filepath.Join(rd, LockName))
	if _, err := lockDir(rd); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("lock through a planted link: %v", err)
	}
	os.Remove(filepath.Join(rd, LockName))
	os.Link(victim, filepath.Join(rd, LockName))
	if _, err := lockDir(rd); err == nil || !strings.Contains(err.Error(), "hard links") {
		t.Errorf("lock through a planted hard link: %v", err)
	}
	os.Symlink(victim, recordPath(rd))
	if _, err := readRecord(rd); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("record through a planted link: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("victim changed: %q", b)
	}
	// A lock file with a longer line is written in place, not truncated.
	os.Remove(filepath.Join(rd, LockName))
	long := strings.Repeat("x", 600) + "\n"
	os.WriteFile(filepath.Join(rd, LockName), []byte(long), 0o600)
	unlock, err = lockDir(rd)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if st, _ := os.Stat(filepath.Join(rd, LockName)); st.Size() != int64(len(long)) {
		t.Errorf("lock truncated to %d bytes", st.Size())
	}
}
