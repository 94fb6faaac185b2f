package busy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a helper process inside nstest scripts:
// "scan DIR..." prints Scan's holders of the mounts at DIR... as JSON;
// "mmap FILE READY" maps FILE, closes it, creates READY and sleeps.
const helperEnv = "BUSY_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(strings.Fields(h)))
	}
	os.Exit(m.Run())
}

func helper(args []string) int {
	switch args[0] {
	case "scan":
		var devs []uint64
		for _, p := range args[1:] {
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			devs = append(devs, uint64(st.Dev))
		}
		hs, err := ScanExcept("/proc", devs, []int{os.Getpid()})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		json.NewEncoder(os.Stdout).Encode(hs)
	case "mmap":
		f, err := os.Open(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		b, err := syscall.Mmap(int(f.Fd()), 0, 1, syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		f.Close()
		_ = b[0]
		os.WriteFile(args[2], nil, 0o600)
		time.Sleep(time.Hour)
	default:
		return 2
	}
	return 0
}

func devOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Dev)
}

func inoOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestScanFixture builds a fake /proc whose links point at real files:
// targets under the test directory are "on the mount", targets in /dev
// (devtmpfs) are not.
func TestScanFixture(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	file := filepath.Join(data, "open.txt")
	lib := filepath.Join(data, "lib.so")
	exe := filepath.Join(data, "prog")
	for _, f := range []string{file, lib, exe} {
		os.WriteFile(f, []byte("x"), 0o644)
	}
	dev := devOf(t, data)
	if dev == devOf(t, "/dev") {
		t.Skip("the test directory and /dev are on the same filesystem")
	}
	hex := fmt.Sprintf("%02x:%02x", unix.Major(dev), unix.Minor(dev))
	proc := filepath.Join(dir, "proc")
	mk := func(pid int, files map[string]string, links map[string]string) {
		p := filepath.Join(proc, strconv.Itoa(pid))
		os.MkdirAll(filepath.Join(p, "fd"), 0o755)
		for n, c := range files {
			os.WriteFile(filepath.Join(p, n), []byte(c), 0o644)
		}
		for n, target := range links {
			if err := os.Symlink(target, filepath.Join(p, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 100: cwd, fd 5 and a mapped library on the mount; exe also mapped.
	mk(100, map[string]string{
		"comm": "bash\n",
		"maps": fmt.Sprintf(`55d0c0000000-55d0c0001000 r-xp 00000000 %[1]s %[2]d                %[3]s
7f0000000000-7f0000001000 r--p 00000000 %[1]s %[4]d                %[5]s
7f0000001000-7f0000002000 r-xp 00001000 %[1]s %[4]d                %[5]s
7f0000003000-7f0000004000 rw-p 00000000 00:00 0 
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
7f0000005000-7f0000006000 r--p 00000000 00:06 4                          /dev/zero
`, hex, inoOf(t, exe), exe, inoOf(t, lib), lib),
	}, map[string]string{"cwd": data, "root": "/dev", "exe": exe, "fd/0": "/dev/null", "fd/5": file, "fd/12": data})
	// 200: nothing on the mount; no comm file, argv[0] from cmdline.
	mk(200, map[string]string{"cmdline": "/usr/bin/sleep\x001000\x00"}, map[string]string{"cwd": "/dev", "root": "/dev", "exe": "/dev/null"})
	// 300: vanished: links point nowhere.
	mk(300, map[string]string{"comm": "gone\n"}, map[string]string{"cwd": filepath.Join(dir, "nowhere"), "exe": filepath.Join(dir, "nowhere")})
	// 400: cmdline only, root on the mount.
	mk(400, map[string]string{"cmdline": "/sbin/chrooted\x00"}, map[string]string{"cwd": "/dev", "root": data})
	// 500: holds the block device of a wanted mount open (st_rdev match).
	var blk unix.Stat_t
	blkDev := uint64(0)
	if unix.Stat("/dev/loop0", &blk) == nil && blk.Mode&unix.S_IFMT == unix.S_IFBLK {
		blkDev = uint64(blk.Rdev)
		mk(500, map[string]string{"comm": "fsck\n"}, map[string]string{"cwd": "/dev", "fd/4": "/dev/loop0", "fd/5": "/dev/null"})
	}
	os.MkdirAll(filepath.Join(proc, "self"), 0o755)
	os.MkdirAll(filepath.Join(proc, "sys"), 0o755)

	got, err := Scan(proc, []uint64{dev, blkDev})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"PID 100 (bash) cwd " + data,
		"PID 100 (bash) exe " + exe,
		"PID 100 (bash) fd 5 " + file,
		"PID 100 (bash) fd 12 " + data,
		"PID 100 (bash) mmap " + lib,
		"PID 400 (chrooted) root " + data,
	}
	if blkDev != 0 {
		want = append(want, "PID 500 (fsck) fd 4 /dev/loop0")
	}
	var gs []string
	for _, h := range got {
		gs = append(gs, h.String())
	}
	if strings.Join(gs, "\n") != strings.Join(want, "\n") {
		t.Errorf("Scan:\n%s\nwant:\n%s", strings.Join(gs, "\n"), strings.Join(want, "\n"))
	}
	got, err = ScanExcept(proc, []uint64{dev}, []int{100, 500})
	if err != nil || len(got) != 1 || got[0].PID != 400 {
		t.Errorf("ScanExcept(100) = %v, %v", got, err)
	}
	if got, _ := Scan(proc, nil); len(got) != 0 {
		t.Errorf("Scan with no devices = %v", got)
	}
	if _, err := Scan(filepath.Join(dir, "noproc"), []uint64{dev}); err == nil {
		t.Error("Scan of a missing proc directory succeeded")
	}
}

func TestParseMaps(t *testing.T) {
	in := `00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon
00651000-00652000 r--p 00051000 08:02 173521      /usr/bin/dbus-daemon
00e03000-00e24000 rw-p 00000000 00:00 0           [heap]
7f1a00000000-7f1a00001000 r--s 00000000 00:27 9979564                    /tmp/with space/file (deleted)
7f1a00002000-7f1a00003000 r--p 00000000 103:0a 77                    /mnt/nvme/lib.so
7f1a00004000-7f1a00005000 r--p 00000000 fd:00 78
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`
	got, err := ParseMaps(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{
		{unix.Mkdev(8, 2), 173521, "/usr/bin/dbus-daemon"},
		{unix.Mkdev(0, 0x27), 9979564, "/tmp/with space/file (deleted)"},
		{unix.Mkdev(0x103, 0x0a), 77, "/mnt/nvme/lib.so"},
		{unix.Mkdev(0xfd, 0), 78, ""},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseMaps:\n%v\nwant\n%v", got, want)
	}
	got, _ = ParseMaps(strings.NewReader(in), map[uint64]bool{unix.Mkdev(0, 39): true})
	if len(got) != 1 || got[0].Ino != 9979564 {
		t.Errorf("filtered: %v", got)
	}
	if _, err := ParseMaps(strings.NewReader("0-1 r--p 0 zz:00 5 /x\n"), nil); err == nil {
		t.Error("bad device accepted")
	}
	if _, err := ParseMaps(strings.NewReader("0-1 r--p 0 08:00 x /x\n"), nil); err == nil {
		t.Error("bad inode accepted")
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
612 22 0:39 / /usr rw,relatime - overlay ov rw,lowerdir=/usr,upperdir=/overlay/u
garbage
`
	m := map[uint64]uint64{}
	if err := ParseMountinfo(strings.NewReader(in), m); err != nil {
		t.Fatal(err)
	}
	if m[22] != unix.Mkdev(254, 0) || m[30] != unix.Mkdev(0, 27) || m[612] != unix.Mkdev(0, 39) || len(m) != 3 {
		t.Errorf("ParseMountinfo = %v", m)
	}
}

func TestHolderString(t *testing.T) {
	h := Holder{PID: 1234, Command: "bash", Use: "cwd", Path: "/usr/local"}
	if h.String() != "PID 1234 (bash) cwd /usr/local" {
		t.Error(h.String())
	}
}

// TestScanOverlay stacks an overlay (lower on the test directory's
// filesystem, upper on a tmpfs: different filesystems, xino=off, as on a
// card) in a private namespace and starts one holder of each kind.
func TestScanOverlay(t *testing.T) {
	nstest.RequireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, xino := range []string{"off", "on"} {
		t.Run("xino="+xino, func(t *testing.T) {
			d := nstest.TempDir(t)
			r := nstest.Run(t, fmt.Sprintf(`
D=%[1]s; T=%[2]q; H=%[3]s
mkdir -p $D/lower $D/t $D/merged
mount -t tmpfs card $D/t
mkdir -p $D/t/u $D/t/w $D/t/direct
echo low > $D/lower/lfile
cp /bin/sleep $D/lower/lsleep
mount -t overlay ov -o lowerdir=$D/lower,upperdir=$D/t/u,workdir=$D/t/w,xino=%[4]s,index=off $D/merged
echo up > $D/merged/ufile
pids=()
trap 'kill ${pids[@]} 2>/dev/null; wait 2>/dev/null' EXIT
(cd $D/merged && exec sleep 1000) & CWD=$!; pids+=($!)
(exec 3<$D/merged/lfile; exec sleep 1000) & FD=$!; pids+=($!)
$D/merged/lsleep 1000 & EXE=$!; pids+=($!)
%[5]s="mmap $D/merged/ufile $D/ready" $T & MM=$!; pids+=($!)
(cd $D/t/direct && exec sleep 1000) & CARD=$!; pids+=($!)
(cd /; exec sleep 1000) & NONE=$!; pids+=($!)
for i in $(seq 100); do [ -e $D/ready ] && break; sleep 0.05; done
echo "PIDS $CWD $FD $EXE $MM $CARD $NONE"
echo "DEVS $(stat -c %%d $D/merged/lfile $D/merged/ufile $D/merged $D/t | tr '\n' ' ')"
%[5]s="scan $D/merged $D/t" $T
`, d, self, "", xino, helperEnv))
			if r.Code != 0 {
				t.Fatalf("%s", r)
			}
			var pids []int
			var hs []Holder
			for _, l := range strings.Split(r.Stdout, "\n") {
				if rest, ok := strings.CutPrefix(l, "PIDS "); ok {
					for _, f := range strings.Fields(rest) {
						n, _ := strconv.Atoi(f)
						pids = append(pids, n)
					}
				}
				if strings.HasPrefix(l, "[") {
					if err := json.Unmarshal([]byte(l), &hs); err != nil {
						t.Fatal(err)
					}
				}
				if strings.HasPrefix(l, "DEVS ") {
					t.Logf("st_dev of merged/lfile merged/ufile merged card: %s", l[5:])
				}
			}
			if len(pids) != 6 {
				t.Fatalf("no PIDs: %s", r)
			}
			m := d + "/merged"
			want := []Holder{
				{pids[0], "sleep", "cwd", m},
				{pids[1], "sleep", "fd 3", m + "/lfile"},
				{pids[2], "lsleep", "exe", m + "/lsleep"},
				{pids[3], "", "mmap", m + "/ufile"},
				{pids[4], "sleep", "cwd", d + "/t/direct"},
			}
			var gs, ws []string
			for _, h := range hs {
				gs = append(gs, fmt.Sprintf("%d %s %s", h.PID, h.Use, h.Path))
			}
			for _, h := range want {
				ws = append(ws, fmt.Sprintf("%d %s %s", h.PID, h.Use, h.Path))
			}
			if strings.Join(gs, "\n") != strings.Join(ws, "\n") {
				t.Errorf("holders:\n%s\nwant:\n%s\n%s", strings.Join(gs, "\n"), strings.Join(ws, "\n"), r)
			}
			for _, h := range hs {
				if h.PID == pids[0] && h.Command != "sleep" || h.PID == pids[2] && h.Command != "lsleep" {
					t.Errorf("command of %v", h)
				}
			}
		})
	}
}

// TestPipelinePeers: in `ovpkg ... | tee`, tee (the read end of ovpkg's
// stdout) is a peer; another process that shares ovpkg's stdout (the
// same write end, like a background job) is not.
func TestPipelinePeers(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	start := func(stdin, stdout *os.File, arg string) *exec.Cmd {
		c := exec.Command("sleep", arg)
		c.Stdin, c.Stdout = stdin, stdout
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	reader := start(r, nil, "32") // tee
	writer := start(nil, w, "31") // ovpkg
	sharer := start(nil, w, "33") // a background job writing to the same pipe
	r.Close()
	w.Close()
	peers := PipelinePeers("/proc", writer.Process.Pid)
	if !slices.Equal(peers, []int{reader.Process.Pid}) {
		t.Fatalf("peers of %d = %v, want only the reader %d (not the sharer %d)", writer.Process.Pid, peers, reader.Process.Pid, sharer.Process.Pid)
	}
	if p := PipelinePeers("/proc", os.Getpid()); slices.Contains(p, reader.Process.Pid) {
		t.Errorf("this test process has no pipe on 0-2 to the reader, got %v", p)
	}
}
