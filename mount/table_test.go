package mount

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func fixture(t *testing.T) Table {
	t.Helper()
	tab, err := LoadTable("testdata/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestLookupAndUnder(t *testing.T) {
	tab := fixture(t)
	if m := tab.Lookup("/usr/"); m == nil || m.FSType != "overlay" {
		t.Fatalf("Lookup(/usr/) = %+v", m)
	}
	if tab.IsMountPoint("/usr/local") {
		t.Error("/usr/local is not a mount point")
	}
	if !tab.IsMountPoint("/usr/local/my dir") {
		t.Error("escaped mount point not unescaped")
	}
	var got []string
	for _, m := range tab.Under("/usr") {
		got = append(got, m.Mountpoint)
	}
	if len(got) != 2 || got[0] != "/usr/local/my dir" || got[1] != "/usr" {
		t.Errorf("Under(/usr) = %q, want deepest first", got)
	}
	if n := len(tab.Under("/")); n != len(tab) {
		t.Errorf("Under(/) = %d mounts, want %d", n, len(tab))
	}
}

func TestSuperOptionAndUpper(t *testing.T) {
	tab := fixture(t)
	m := tab.OverlayUsingUpper("/overlay/ovpkg/layers/1/tree/etc/")
	if m == nil || m.Mountpoint != "/etc" {
		t.Fatalf("OverlayUsingUpper = %+v", m)
	}
	if v, ok := SuperOption(tab.Lookup("/srv"), "upperdir"); !ok || v != "/a,b/up" {
		t.Errorf("escaped comma: %q %v", v, ok)
	}
	if tab.OverlayUsingUpper("/nowhere") != nil {
		t.Error("found an upper that is not there")
	}
	if d := Dev(tab.Lookup("/overlay")); d != unix.Mkdev(7, 3) {
		t.Errorf("Dev = %d", d)
	}
	if got := tab.Source("/dev/loop3"); len(got) != 1 || got[0].Mountpoint != "/overlay" {
		t.Errorf("Source = %+v", got)
	}
}

func TestSelfHasRoot(t *testing.T) {
	tab, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if !tab.IsMountPoint("/") {
		t.Error("/ is not a mount point in /proc/self/mountinfo")
	}
}

func TestErrorKeepsErrno(t *testing.T) {
	dir := t.TempDir()
	err := Unmount(dir, 0) // not a mount point: EINVAL (or EPERM when not root)
	if err == nil {
		t.Fatal("unmounting a plain directory succeeded")
	}
	var me *Error
	if !errors.As(err, &me) || me.Target != dir || me.Op != "umount" {
		t.Fatalf("error lost its context: %#v", err)
	}
	want := unix.EINVAL
	if os.Geteuid() != 0 {
		want = unix.EPERM
	}
	if !errors.Is(err, want) {
		t.Errorf("errors.Is(%v, %v) = false", err, want)
	}
	err = Mount("none", dir, "nosuchfs", 0, "")
	if err == nil || !(errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EPERM)) {
		t.Errorf("mount of unknown type: %v", err)
	}
	if s := Flags(unix.MS_NOSUID | unix.MS_NOATIME); s != "nosuid,noatime" {
		t.Errorf("Flags = %q", s)
	}
}
