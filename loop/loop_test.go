package loop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a tiny loop tool inside nstest
// scripts: LOOP_TEST_HELPER="detach /dev/loopN" or "wait /dev/loopN".
const helperEnv = "LOOP_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(strings.Fields(h)))
	}
	os.Exit(m.Run())
}

func helper(args []string) int {
	switch args[0] {
	case "detach":
		err := Detach(args[1])
		fmt.Printf("detach err=%v ebusy=%v\n", err, errors.Is(err, unix.EBUSY))
		if err != nil {
			return 1
		}
	case "wait":
		n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(args[1]), "loop"))
		d, err := status(n)
		if err != nil {
			fmt.Println("status:", err)
			return 1
		}
		if err := WaitDetached(d, 5*time.Second); err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println("detached")
	case "lookup":
		ds, err := Lookup(args[1])
		if err != nil {
			fmt.Println("lookup:", err)
			return 1
		}
		for _, d := range ds {
			fmt.Printf("found %s\n", d.Path)
		}
	default:
		return 2
	}
	return 0
}

// image writes a size-byte file whose 512-byte sectors each start with
// their sector number, so a read through the device shows the offset.
func image(t *testing.T, dir string, size int64) string {
	t.Helper()
	b := make([]byte, size)
	for s := int64(0); s < size/512; s++ {
		copy(b[s*512:], fmt.Sprintf("sector %08d\n", s))
	}
	p := filepath.Join(dir, "card.img")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type losetupDev struct {
	Name      string `json:"name"`
	Sizelimit int64  `json:"sizelimit"`
	Offset    int64  `json:"offset"`
	Autoclear bool   `json:"autoclear"`
	RO        bool   `json:"ro"`
	BackFile  string `json:"back-file"`
}

// losetupShow asks util-linux about dev (independent check).
func losetupShow(t *testing.T, dev string) losetupDev {
	t.Helper()
	out, err := exec.Command("losetup", "-J", "-l", dev).Output()
	if err != nil {
		t.Fatalf("losetup -J -l %s: %v", dev, err)
	}
	var v struct {
		Loopdevices []losetupDev `json:"loopdevices"`
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v.Loopdevices) != 1 {
		t.Fatalf("losetup -J -l %s: %v %s", dev, err, out)
	}
	return v.Loopdevices[0]
}

func sysfs(t *testing.T, dev, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func bound(dev string) bool {
	_, err := os.Stat(filepath.Join("/sys/block", filepath.Base(dev), "loop"))
	return err == nil
}

func readDev(t *testing.T, dev string, n int) []byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func checkAttached(t *testing.T, d *Device, img string, opt Options) {
	t.Helper()
	l := losetupShow(t, d.Path)
	if l.Offset != opt.Offset || l.Sizelimit != opt.SizeLimit || l.Autoclear != opt.Autoclear ||
		l.RO != opt.ReadOnly || l.BackFile != img {
		t.Errorf("losetup sees %+v, asked %+v for %s", l, opt, img)
	}
	if d.Offset != opt.Offset || d.SizeLimit != opt.SizeLimit || d.Autoclear != opt.Autoclear ||
		d.ReadOnly != opt.ReadOnly || d.Backing != img {
		t.Errorf("Attach returned %+v, asked %+v for %s", d, opt, img)
	}
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	if d.Dev != uint64(st.Dev) || d.Ino != st.Ino {
		t.Errorf("Dev/Ino %d/%d, file is %d/%d", d.Dev, d.Ino, st.Dev, st.Ino)
	}
	want := st.Size - opt.Offset
	if opt.SizeLimit > 0 && opt.SizeLimit < want {
		want = opt.SizeLimit
	}
	if got := sysfs(t, d.Path, "size"); got != strconv.FormatInt(want/512, 10) {
		t.Errorf("sysfs size %s sectors, want %d", got, want/512)
	}
	if got := sysfs(t, d.Path, "loop/offset"); got != strconv.FormatInt(opt.Offset, 10) {
		t.Errorf("sysfs offset %s, want %d", got, opt.Offset)
	}
	first := readDev(t, d.Path, 16)
	if wantB := fmt.Sprintf("sector %08d\n", opt.Offset/512); string(first) != wantB {
		t.Errorf("device starts with %q, want %q", first, wantB)
	}
}

func TestAttachOffsetSizeLimitAutoclear(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "losetup")
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			forceLegacy.Store(legacy)
			defer forceLegacy.Store(false)
			img := image(t, nstest.TempDir(t), 8<<20)
			opt := Options{Offset: 1 << 20, SizeLimit: 3 << 20, Autoclear: true}
			c0, s0 := boundByConfigure.Load(), boundBySetFD.Load()
			d, err := Attach(img, opt)
			if err != nil {
				t.Fatal(err)
			}
			c1, s1 := boundByConfigure.Load()-c0, boundBySetFD.Load()-s0
			if legacy && (c1 != 0 || s1 != 1) || !legacy && (c1 != 1 || s1 != 0) {
				t.Errorf("bound by LOOP_CONFIGURE %d times, by LOOP_SET_FD %d times", c1, s1)
			}
			defer d.Detach()
			checkAttached(t, d, img, opt)
			// Nothing mounts it: closing the handle detaches it.
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if err := WaitDetached(d, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if bound(d.Path) {
				if b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d.Path), "loop", "backing_file")); err == nil &&
					strings.TrimSpace(string(b)) == img {
					t.Errorf("%s still bound to %s after close", d.Path, img)
				}
			}
		})
	}
}

func TestAttachToEndReadOnly(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "losetup")
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			forceLegacy.Store(legacy)
			defer forceLegacy.Store(false)
			img := image(t, nstest.TempDir(t), 2<<20)
			opt := Options{Offset: 4096, ReadOnly: true}
			d, err := Attach(img, opt)
			if err != nil {
				t.Fatal(err)
			}
			checkAttached(t, d, img, opt)
			f, err := os.OpenFile(d.Path, os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteAt([]byte("x"), 0)
				if err == nil {
					err = f.Sync()
				}
				f.Close()
			}
			if err == nil {
				t.Errorf("writing to read-only %s succeeded", d.Path)
			}
			// Without autoclear, closing leaves it bound; Detach removes it.
			d.Close()
			if !bound(d.Path) {
				t.Fatalf("%s detached by close without autoclear", d.Path)
			}
			if err := Detach(d.Path); err != nil {
				t.Fatal(err)
			}
			if err := WaitDetached(d, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			// A second detach through the stale Device must not touch the
			// device (it may already be someone else's): ENXIO.
			if err := d.Detach(); !errors.Is(err, unix.ENXIO) {
				t.Errorf("second Detach: %v, want ENXIO", err)
			}
		})
	}
}

func TestAttachErrors(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.TempDir(t)
	img := image(t, dir, 1<<20)
	cases := []struct {
		name    string
		backing string
		opt     Options
		errno   error
	}{
		{"missing file", filepath.Join(dir, "nope.img"), Options{}, unix.ENOENT},
		{"directory", dir, Options{}, unix.EISDIR},
		{"offset past end", img, Options{Offset: 1 << 20}, unix.EINVAL},
		{"size limit past end", img, Options{Offset: 512, SizeLimit: 1 << 20}, unix.EINVAL},
		{"negative offset", img, Options{Offset: -1}, unix.EINVAL},
		{"negative size limit", img, Options{SizeLimit: -1}, unix.EINVAL},
	}
	for _, c := range cases {
		d, err := Attach(c.backing, c.opt)
		if err == nil {
			d.Detach()
			t.Errorf("%s: attached %s", c.name, d.Path)
			continue
		}
		var le *Error
		if !errors.Is(err, c.errno) || !errors.As(err, &le) {
			t.Errorf("%s: %v (%T), want *loop.Error with %v", c.name, err, err, c.errno)
		}
		t.Logf("%s: %v", c.name, err)
	}
	if len(LoopsUnder(dir)) != 0 {
		t.Errorf("failed attaches left devices: %v", LoopsUnder(dir))
	}
}

// LoopsUnder is nstest.LoopsUnder, here for a direct check.
func LoopsUnder(dir string) []string { return nstest.LoopsUnder(dir) }

func TestDetachErrors(t *testing.T) {
	nstest.RequireRoot(t)
	if err := Detach("/dev/loop-does-not-exist"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Detach of missing node: %v, want ENOENT", err)
	}
	// A device of our own with a high index: nobody else's GET_FREE
	// hands it out while we test, so Detach cannot clear another test's
	// device by accident.
	ctl, err := os.OpenFile(ControlPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	n := -1
	for i := 900 + os.Getpid()%50; i < 1000; i++ {
		if got, err := ioctlArg(int(ctl.Fd()), unix.LOOP_CTL_ADD, i); err == nil {
			n = got
			break
		}
	}
	if n < 0 {
		t.Skip("could not add a loop device")
	}
	defer ioctlArg(int(ctl.Fd()), unix.LOOP_CTL_REMOVE, n)
	path := fmt.Sprintf("/dev/loop%d", n)
	for i := 0; i < 100; i++ { // devtmpfs creates the node
		if _, err := os.Stat(path); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	err = Detach(path)
	if !errors.Is(err, unix.ENXIO) {
		t.Errorf("Detach of free device: %v, want ENXIO", err)
	}
	t.Logf("%v", err)
}

func ioctlArg(fd int, req uint, arg int) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func TestWaitDetachedTimeout(t *testing.T) {
	nstest.RequireRoot(t)
	img := image(t, nstest.TempDir(t), 1<<20)
	d, err := Attach(img, Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	err = WaitDetached(d, 50*time.Millisecond)
	if !errors.Is(err, ErrStillAttached) {
		t.Errorf("WaitDetached on an open device: %v, want ErrStillAttached", err)
	}
}

// TestDetachHeldOpen shows the kernel's answer to LOOP_CLR_FD on a device
// somebody else still has open: success, and a deferred detach.
func TestDetachHeldOpen(t *testing.T) {
	nstest.RequireRoot(t)
	img := image(t, nstest.TempDir(t), 1<<20)
	d, err := Attach(img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Detach()
	other, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Detach(); err != nil {
		t.Fatalf("Detach while another opener holds it: %v", err)
	}
	if !bound(d.Path) {
		t.Fatalf("%s detached while still open", d.Path)
	}
	if err := WaitDetached(d, 50*time.Millisecond); !errors.Is(err, ErrStillAttached) {
		t.Errorf("WaitDetached while held: %v", err)
	}
	other.Close()
	if err := WaitDetached(d, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestDetachMounted mounts the device inside a private namespace and runs
// Detach (this test binary as a helper) while it is mounted.
func TestDetachMounted(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "mkfs.ext2", "e2fsck")
	dir := nstest.TempDir(t)
	img := filepath.Join(dir, "card.img")
	if out, err := exec.Command("sh", "-c", "truncate -s 8M "+img+" && mkfs.ext2 -q -F "+img).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	d, err := Attach(img, Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Detach()
	self, _ := os.Executable()
	r := nstest.Run(t, fmt.Sprintf(`
mkdir -p %[1]s/mnt
mount %[2]s %[1]s/mnt
echo data > %[1]s/mnt/file
LOOP_TEST_HELPER="detach %[2]s" %[3]s
test -e /sys/block/%[4]s/loop && echo still-bound-while-mounted
umount %[1]s/mnt
`, dir, d.Path, self, filepath.Base(d.Path)))
	d.Close() // our handle; the mount is gone, nothing holds it now
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.Stdout, "detach err=<nil>") || !strings.Contains(r.Stdout, "still-bound-while-mounted") {
		t.Errorf("expected Detach to succeed and be deferred while mounted:\n%s", r)
	}
	if err := WaitDetached(d, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn after deferred detach: %v\n%s", err, out)
	}
}

func TestLookupByInode(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.TempDir(t)
	img := image(t, dir, 1<<20)
	link := filepath.Join(dir, "hardlink.img")
	if err := os.Link(img, link); err != nil {
		t.Fatal(err)
	}
	sym := filepath.Join(dir, "symlink.img")
	if err := os.Symlink("card.img", sym); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy.img")
	b, _ := os.ReadFile(img)
	os.WriteFile(cp, b, 0o600)

	d, err := Attach(link, Options{Offset: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Detach()
	for _, p := range []string{img, link, sym, "/proc/self/root" + img} {
		got, err := Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Path != d.Path || got[0].Offset != 512 {
			t.Errorf("Lookup(%s) = %+v, want %s", p, got, d.Path)
		}
	}
	// Through a bind mount of the file (in a private namespace): another
	// path, another mount, same st_dev/st_ino.
	self, _ := os.Executable()
	r := nstest.Run(t, fmt.Sprintf(`
touch %[1]s/bound.img
mount --bind %[2]s %[1]s/bound.img
%[3]s="lookup %[1]s/bound.img" %[4]s
umount %[1]s/bound.img
`, dir, img, helperEnv, self))
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "found "+d.Path {
		t.Errorf("Lookup through a bind mount: want %s\n%s", d.Path, r)
	}
	if got, _ := Lookup(cp); len(got) != 0 {
		t.Errorf("Lookup(copy) = %+v, want none", got)
	}
	if _, err := Lookup(filepath.Join(dir, "missing")); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Lookup(missing): %v", err)
	}
	all, err := List()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range all {
		if x.Path == d.Path {
			found = x.Backing == link && x.Dev == d.Dev && x.Ino == d.Ino
		}
	}
	if !found {
		t.Errorf("List() = %+v lacks %+v", all, d)
	}
}

func TestAttachRace(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.TempDir(t)
	const n = 12
	imgs := make([]string, n)
	for i := range imgs {
		sub := filepath.Join(dir, strconv.Itoa(i))
		os.Mkdir(sub, 0o755)
		imgs[i] = image(t, sub, 256<<10)
	}
	for _, legacy := range []bool{false, true} {
		forceLegacy.Store(legacy)
		devs := make([]*Device, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range imgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				devs[i], errs[i] = Attach(imgs[i], Options{Offset: int64(i) * 512, Autoclear: true})
			}()
		}
		// Competitors in other processes: losetup binds devices from the
		// same pool; Attach must never clear one of theirs.
		rival := make([]string, 3)
		for i := range rival {
			img := filepath.Join(dir, fmt.Sprintf("rival%d.img", i))
			os.WriteFile(img, make([]byte, 64<<10), 0o600)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if out, err := exec.Command("losetup", "--find", "--show", img).Output(); err == nil {
					rival[i] = strings.TrimSpace(string(out)) + "=" + img
				}
			}()
		}
		r0 := busyRetries.Load()
		close(start)
		wg.Wait()
		forceLegacy.Store(false)
		for _, r := range rival {
			dev, img, ok := strings.Cut(r, "=")
			if !ok {
				continue // losetup missing or failed; Attach is what is under test
			}
			if b := sysfs(t, dev, "loop/backing_file"); b != img {
				t.Errorf("rival %s lost its binding to %s (now %q)", dev, img, b)
			}
			exec.Command("losetup", "-d", dev).Run()
		}
		t.Logf("legacy=%v: %d attaches lost the free-device race and retried (at most %d times for one attach)", legacy, busyRetries.Load()-r0, maxRetries.Load())
		seen := map[string]int{}
		for i, d := range devs {
			if errs[i] != nil {
				t.Errorf("legacy=%v attach %d: %v", legacy, i, errs[i])
				continue
			}
			if j, dup := seen[d.Path]; dup {
				t.Errorf("legacy=%v: %s given to both %d and %d", legacy, d.Path, j, i)
			}
			seen[d.Path] = i
			if want := fmt.Sprintf("sector %08d\n", i); string(readDev(t, d.Path, 16)) != want {
				t.Errorf("legacy=%v: %s does not start at image %d's offset", legacy, d.Path, i)
			}
			if b := sysfs(t, d.Path, "loop/backing_file"); b != imgs[i] {
				t.Errorf("legacy=%v: %s backed by %s, want %s", legacy, d.Path, b, imgs[i])
			}
		}
		for _, d := range devs {
			if d != nil {
				d.Close()
				if err := WaitDetached(d, 5*time.Second); err != nil {
					t.Error(err)
				}
			}
		}
	}
}

// TestAttachCreatesNode points the device directory at an empty directory
// so that /dev/loopN is missing, as on a system without udev.
func TestAttachCreatesNode(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.TempDir(t)
	img := image(t, dir, 1<<20)
	nodes := filepath.Join(dir, "dev")
	os.Mkdir(nodes, 0o755)
	old := devDir
	devDir = nodes
	defer func() { devDir = old }()
	d, err := Attach(img, Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Close()
		WaitDetached(d, 5*time.Second)
		os.Remove(d.Path)
	}()
	if filepath.Dir(d.Path) != nodes {
		t.Fatalf("device %s not under %s", d.Path, nodes)
	}
	var st unix.Stat_t
	if err := unix.Stat(d.Path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(uint64(st.Rdev)) != Major || int(unix.Minor(uint64(st.Rdev))) != d.Index {
		t.Errorf("node %s: mode %o rdev %d:%d", d.Path, st.Mode, unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	}
	if want := sysfs(t, "loop"+strconv.Itoa(d.Index), "dev"); want != fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))) {
		t.Errorf("node rdev differs from sysfs dev %s", want)
	}
	if !bytes.HasPrefix(readDev(t, d.Path, 16), []byte("sector 00000000")) {
		t.Error("created node does not read the image")
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{Op: "attach", Device: "/dev/loop3", Backing: "/mnt/card.img", Err: unix.EBUSY}
	if got, want := e.Error(), "loop attach /dev/loop3 (backing /mnt/card.img): device or resource busy"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if !errors.Is(e, unix.EBUSY) {
		t.Error("errors.Is(EBUSY) false")
	}
}

// TestLegacyUndo makes LOOP_SET_STATUS64 fail after LOOP_SET_FD bound the
// device: Attach must clear that device and report the errno.
func TestLegacyUndo(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.TempDir(t)
	img := image(t, dir, 1<<20)
	forceLegacy.Store(true)
	statusHook = func(i *unix.LoopInfo64) { i.Offset = 1 << 63 } // > LLONG_MAX
	defer func() { forceLegacy.Store(false); statusHook = nil }()
	d, err := Attach(img, Options{Autoclear: false})
	if err == nil {
		d.Detach()
		t.Fatal("attach succeeded with a bad status")
	}
	var le *Error
	if !errors.As(err, &le) || le.Op != "set status" || !errors.Is(err, unix.EOVERFLOW) {
		t.Errorf("error %v (%#v), want set status EOVERFLOW", err, le)
	}
	if left := nstest.LoopsUnder(dir); len(left) != 0 {
		t.Errorf("device left bound after failed SET_STATUS64: %v", left)
	}
	t.Log(err)
}

// TestCheckCatchesMismatch feeds the post-attach check options the kernel
// did not apply: the check must fail, so it is not a check that cannot.
func TestCheckCatchesMismatch(t *testing.T) {
	nstest.RequireRoot(t)
	img := image(t, nstest.TempDir(t), 1<<20)
	d, err := Attach(img, Options{Offset: 512, Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var st unix.Stat_t
	unix.Stat(img, &st)
	for _, c := range []struct {
		opt  Options
		want int64
	}{
		{Options{Offset: 1024, Autoclear: true}, 1<<20 - 512},
		{Options{Offset: 512, SizeLimit: 4096, Autoclear: true}, 1<<20 - 512},
		{Options{Offset: 512}, 1<<20 - 512},
		{Options{Offset: 512, Autoclear: true, ReadOnly: true}, 1<<20 - 512},
		{Options{Offset: 512, Autoclear: true}, 4096},
	} {
		if _, err := check(d.File, d.Path, d.Index, c.opt, &st, c.want); !errors.Is(err, ErrNotApplied) {
			t.Errorf("check(%+v, size %d) = %v, want ErrNotApplied", c.opt, c.want, err)
		} else {
			t.Log(err)
		}
	}
	if _, err := check(d.File, d.Path, d.Index, Options{Offset: 512, Autoclear: true}, &st, 1<<20-512); err != nil {
		t.Errorf("check of the true settings: %v", err)
	}
}

func TestAttachDirectIO(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "losetup")
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			forceLegacy.Store(legacy)
			defer forceLegacy.Store(false)
			img := image(t, nstest.TempDir(t), 4<<20)
			opt := Options{Offset: 1 << 20, Autoclear: true, DirectIO: true}
			d, err := Attach(img, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			opt.DirectIO = false
			checkAttached(t, d, img, opt)
			if !d.DirectIO || sysfs(t, d.Path, "loop/dio") != "1" {
				t.Errorf("direct I/O not on: Device.DirectIO=%v sysfs dio=%s", d.DirectIO, sysfs(t, d.Path, "loop/dio"))
			}
			all, _ := Lookup(img)
			if len(all) != 1 || !all[0].DirectIO {
				t.Errorf("Lookup does not report dio: %+v", all)
			}
		})
	}
}
