package selfexec

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary play a program that removes the mount
// it was started from: SELFEXEC_TEST_HELPER="umount DIR reexec|noreexec|force".
const (
	helperEnv = "SELFEXEC_TEST_HELPER"
	marker    = "SELFEXEC_TEST_REEXECUTED"
)

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(strings.Fields(h)))
	}
	os.Exit(m.Run())
}

func helper(args []string) int {
	if args[0] != "umount" || len(args) != 3 {
		return 2
	}
	dir, mode := args[1], args[2]
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		fmt.Println("stat:", err)
		return 1
	}
	if mode != "noreexec" {
		if err := FromMemory(marker, []uint64{uint64(st.Dev)}, mode == "force"); err != nil {
			fmt.Println("FromMemory:", err)
			return 1
		}
	}
	exe, _ := os.Readlink("/proc/self/exe")
	cwd, _ := os.Getwd()
	fmt.Printf("reexecuted=%v exe=%s cwd=%s\n", Reexecuted(marker), exe, cwd)
	fmt.Printf("umount err=%v\n", unix.Unmount(dir, 0))
	return 0
}

// TestUnmountOwnDirectory overlays the directory holding the program (as
// ovmount overlays /usr while ovpkg lives in /usr/bin) and has the program
// unmount it: EBUSY when it runs from its file, success after FromMemory.
func TestUnmountOwnDirectory(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "unshare") // the memfd_noexec cases run in a child PID namespace
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := nstest.TempDir(t)
	r := nstest.Run(t, fmt.Sprintf(`
D=%[1]s
mkdir -p $D/bin $D/card
cp %[2]s $D/bin/prog
mount -t tmpfs card $D/card
mkdir -p $D/card/u $D/card/w
ov() { mount -t overlay ov -o lowerdir=$D/bin,upperdir=$D/card/u,workdir=$D/card/w,xino=$1,index=off $D/bin; }
for xino in off on; do
  ov $xino
  echo "== xino=$xino noreexec"
  (cd /; %[3]s="umount $D/bin noreexec" $D/bin/prog)
  echo "== xino=$xino reexec"
  (cd $D/bin; %[3]s="umount $D/bin reexec" $D/bin/prog)
  if grep -q " $D/bin " /proc/self/mountinfo; then umount $D/bin; fi
done
ov off
mkdir -p $D/x
mount -t tmpfs x $D/x
echo "== force, not on the mount"
(cd /; %[3]s="umount $D/x force" %[2]s)
mount -t tmpfs x $D/x
echo "== not needed"
(cd /; %[3]s="umount $D/x reexec" %[2]s)
umount $D/bin
echo "== memfd_noexec=1"
ov off
(cd /; unshare --pid --fork sh -c "echo 1 > /proc/sys/vm/memfd_noexec && %[3]s='umount $D/bin reexec' exec $D/bin/prog")
grep -q " $D/bin " /proc/self/mountinfo && umount $D/bin
echo "== memfd_noexec=2"
ov off
(cd /; unshare --pid --fork sh -c "echo 2 > /proc/sys/vm/memfd_noexec && %[3]s='umount $D/bin reexec' exec $D/bin/prog") || echo "exit $?"
grep -q " $D/bin " /proc/self/mountinfo && umount $D/bin
umount $D/card
`, d, self, helperEnv))
	t.Logf("%s", r)
	if r.Code != 0 {
		t.Fatalf("script failed")
	}
	sections := map[string]string{}
	var cur string
	for _, l := range strings.Split(r.Stdout, "\n") {
		if h, ok := strings.CutPrefix(l, "== "); ok {
			cur = h
			continue
		}
		sections[cur] += l + "\n"
	}
	for _, xino := range []string{"off", "on"} {
		if s := sections["xino="+xino+" noreexec"]; !strings.Contains(s, "reexecuted=false") ||
			!strings.Contains(s, "umount err=device or resource busy") {
			t.Errorf("xino=%s: without re-exec the unmount should fail EBUSY:\n%s", xino, s)
		}
		if s := sections["xino="+xino+" reexec"]; !strings.Contains(s, "reexecuted=true exe=/memfd:ovpkg") ||
			!strings.Contains(s, "cwd=/\n") || !strings.Contains(s, "umount err=<nil>") {
			t.Errorf("xino=%s: after re-exec from memory the unmount should succeed:\n%s", xino, s)
		}
	}
	if s := sections["force, not on the mount"]; !strings.Contains(s, "reexecuted=true exe=/memfd:ovpkg") {
		t.Errorf("force did not re-execute:\n%s", s)
	}
	if s := sections["not needed"]; !strings.Contains(s, "reexecuted=false") {
		t.Errorf("re-executed although the program is not on the mount:\n%s", s)
	}
	if s := sections["memfd_noexec=1"]; !strings.Contains(s, "reexecuted=true") || !strings.Contains(s, "umount err=<nil>") {
		t.Errorf("with vm.memfd_noexec=1, MFD_EXEC should still allow the re-exec:\n%s", s)
	}
	if s := sections["memfd_noexec=2"]; !strings.Contains(s, "FromMemory: selfexec: ") || !strings.Contains(s, "exit 1") {
		t.Errorf("with vm.memfd_noexec=2 FromMemory should report an error:\n%s", s)
	}
}

func TestMapDev(t *testing.T) {
	maps := `55d0c0000000-55d0c0001000 r--p 00000000 00:27 9979024                    /usr/bin/ovpkg
55d0c0001000-55d0c0002000 r-xp 00001000 00:27 9979024                    /usr/bin/ovpkg
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
`
	d, ok := mapDev(strings.NewReader(maps), 9979024)
	if !ok || d != unix.Mkdev(0, 39) {
		t.Errorf("mapDev = %d, %v; want 0:39", d, ok)
	}
	if _, ok := mapDev(strings.NewReader(maps), 1); ok {
		t.Error("found an inode that is not mapped")
	}
}

func TestReexecuted(t *testing.T) {
	t.Setenv(marker, "")
	if Reexecuted(marker) {
		t.Error("Reexecuted with empty marker")
	}
	t.Setenv(marker, "1")
	if !Reexecuted(marker) {
		t.Error("not Reexecuted with marker set")
	}
	// Already re-executed: FromMemory must return without exec even when forced.
	if err := FromMemory(marker, nil, true); err != nil {
		t.Error(err)
	}
}

func TestNeeded(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	if ok, err := Needed([]uint64{uint64(st.Dev)}); !ok || err != nil {
		t.Errorf("Needed(own device) = %v, %v", ok, err)
	}
	if ok, err := Needed([]uint64{unix.Mkdev(4095, 1)}); ok || err != nil {
		t.Errorf("Needed(other device) = %v, %v", ok, err)
	}
}

func TestCopy(t *testing.T) {
	f, err := Copy()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != exe.Size() || fi.Mode()&0o111 == 0 {
		t.Errorf("memfd copy: size %d mode %v, executable is %d bytes", fi.Size(), fi.Mode(), exe.Size())
	}
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("memfd not close-on-exec: %v %v", flags, err)
	}
}
