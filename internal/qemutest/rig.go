package qemutest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/internal/nstest"
)

// RealInit is the "real init" of the roots Rig builds: it marks its start
// in the kernel log (timestamped), prints the boot state, runs the step
// script the kernel command line names (teststep=NAME reaches init as its
// environment) with set -ex and a fail function, unmounts everything as
// an init's shutdown does (umount -a -r) and powers off.
const RealInit = `#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
echo "<1>REALINIT" > /dev/kmsg
echo "REALINIT pid=$$ args=[$*] step=$teststep"
echo "--- boot-state"; cat /run/ovpkg/boot-state 2>&1; echo "--- end"
rc=none
if [ -f "/etc/test/$teststep.sh" ]; then
	(fail() { echo "FAIL: $*"; exit 1; }; set -ex; . "/etc/test/$teststep.sh") 2>&1; rc=$?
fi
echo "STEPDONE rc=$rc"
# What an init's shutdown does: unmount everything, read-only where busy.
sync
umount -a -r 2>/dev/null
poweroff -f
`

// Rig is what boot tests of ovpkg share: the kernel, busybox, the
// initramfs and the ovpkg test build.
type Rig struct {
	K      *Kernel
	BB     string // busybox
	Initrd string
	Ovpkg  string // the multi-call binary (test build)
}

// NewRig prepares a rig (skips with -short; fails under CI without the
// tools or the archive).
func NewRig(t testing.TB) *Rig {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a kernel under QEMU")
	}
	nstest.Need(t, "qemu-system-x86_64", "mke2fs", "debugfs", "e2fsck")
	r := &Rig{K: DebianKernel(t), BB: Busybox(t)}
	r.Initrd = Initramfs(t, r.K, r.BB)
	r.Ovpkg = filepath.Join(nstest.Bin(t), "ovpkg")
	return r
}

// Root builds a root disk (ext4): busybox, ovpkg as /sbin/ovpkg and
// /sbin/init-overlay, the modules init-overlay may load, RealInit as
// /sbin/init, conf as /etc/ovpkg.conf (when not empty), each step script
// as /etc/test/NAME.sh, an fstab naming /dev/vdb on /mnt/sd; extra
// changes the tree before the image is made.
func (r *Rig) Root(t testing.TB, conf string, steps map[string]string, extra func(d *Dir)) string {
	t.Helper()
	d := NewDir(t)
	d.Busybox(r.BB)
	d.Mkdir("proc", "sys", "dev", "run", "tmp", "overlay", "mnt/sd", "root", "usr/share", "var/lib", "etc/test", "sbin")
	d.Copy("sbin/ovpkg", r.Ovpkg)
	d.Symlink("sbin/init-overlay", "ovpkg")
	d.Write("sbin/init", RealInit, 0o755)
	d.Write("etc/motd", "base motd\n", 0o644)
	d.Write("usr/share/base.txt", "from the base\n", 0o644)
	d.Write("etc/fstab", "/dev/vdb /mnt/sd ext2 defaults 0 0\n", 0o644)
	d.Modules(r.K, "overlay", "loop", "ext4")
	if conf != "" {
		d.Write("etc/ovpkg.conf", conf, 0o644)
	}
	for name, s := range steps {
		d.Write("etc/test/"+name+".sh", s, 0o644)
	}
	if extra != nil {
		extra(d)
	}
	return d.Ext("ext4", 64+int(d.Size()>>20))
}

// Card makes a 16 MiB card image with the test build's mkoverlay (mutate
// may damage it) and puts it on an ext2 disk as /card.img; it returns the
// disk and the config lines naming the card in the guest (overlaid
// directories usr etc var).
func (r *Rig) Card(t testing.TB, mutate func(img string)) (disk, conf string) {
	t.Helper()
	d := NewDir(t)
	cfg := filepath.Join(t.TempDir(), "ovpkg.conf")
	img := d.P("card.img")
	out, err := exec.Command(filepath.Join(filepath.Dir(r.Ovpkg), "mkoverlay"), "--config", cfg, "16", img).CombinedOutput()
	if err != nil {
		t.Fatalf("mkoverlay: %v\n%s", err, out)
	}
	f, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	uuid, _ := f.Get(config.KeyUUID)
	if mutate != nil {
		mutate(img)
	}
	return d.Ext("ext2", 48), fmt.Sprintf("SD_ROOTFS=/mnt/sd/card.img\nSD_UUID=%s\nOVERLAY_DIRS='usr etc var'\n", uuid)
}

// Result is one boot's outcome.
type Result struct {
	Out   string            // the whole console
	Args  string            // the real init's arguments
	State map[string]string // /run/ovpkg/boot-state as the real init saw it
	RC    string            // the step script's exit status ("none": no script)
	Took  time.Duration     // QEMU start to power-off
	// Kernel log timestamps (seconds since the kernel started): the
	// initramfs's switch_root and the real init's first line.
	Switch, Real float64
}

var kmsgTime = regexp.MustCompile(`(?m)^\[\s*([0-9.]+)\] (QEMUTEST switch_root|REALINIT)`)

// BootStep boots root (and the other disks) with init=/sbin/init-overlay
// (unless cmdline names another init=), runs step, waits for power-off.
func (r *Rig) BootStep(t testing.TB, name, cmdline, step string, disks ...string) *Result {
	t.Helper()
	init := "init=/sbin/init-overlay "
	if strings.Contains(" "+cmdline, " init=") {
		init = ""
	}
	vm := Boot(t, Options{Kernel: r.K, Initrd: r.Initrd, Disks: disks, Name: name,
		Append: "quiet root=/dev/vda ro " + init + "teststep=" + step + " " + cmdline})
	m := vm.Wait(`REALINIT pid=(\d+) args=\[(.*)\]`)
	if m[1] != "1" {
		t.Fatalf("%s: the real init runs as PID %s, not 1", name, m[1])
	}
	done := vm.Wait(`STEPDONE rc=(\S+)`)
	took := vm.WaitExit()
	res := &Result{Out: vm.Output(), Args: m[2], RC: done[1], Took: took, State: map[string]string{}}
	if i, j := strings.Index(res.Out, "--- boot-state\n"), strings.Index(res.Out, "--- end"); i >= 0 && j > i {
		f, err := config.Parse("boot-state", strings.NewReader(res.Out[i+len("--- boot-state\n"):j]))
		if err != nil {
			t.Fatalf("%s: boot-state: %v", name, err)
		}
		for _, k := range f.Keys() {
			res.State[k], _ = f.Get(k)
		}
	}
	for _, m := range kmsgTime.FindAllStringSubmatch(res.Out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		if m[2] == "REALINIT" {
			res.Real = v
		} else {
			res.Switch = v
		}
	}
	if vm.Panicked() {
		t.Fatalf("%s: kernel panic", name)
	}
	t.Logf("%s: powered off after %v; kernel start to real init %.3f s (switch_root at %.3f s); init-overlay %s ms (%s)", name,
		took.Round(time.Millisecond), res.Real, res.Switch, res.Ms("T_EXEC_MS", "T_START_MS"), res.State["PHASES_MS"])
	return res
}

// Ms returns State[a]-State[b] as milliseconds text.
func (r *Result) Ms(a, b string) string {
	x, _ := strconv.ParseFloat(r.State[a], 64)
	y, _ := strconv.ParseFloat(r.State[b], 64)
	return fmt.Sprintf("%.1f", x-y)
}

// Want checks boot-state values.
func (r *Result) Want(t testing.TB, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if got := r.State[kv[i]]; got != kv[i+1] {
			t.Errorf("boot-state %s=%q, want %q", kv[i], got, kv[i+1])
		}
	}
}

// Has checks the console for a pattern.
func (r *Result) Has(t testing.TB, re string) {
	t.Helper()
	if !regexp.MustCompile(re).MatchString(r.Out) {
		t.Errorf("console lacks %q", re)
	}
}

// OK fails the test when the step script failed.
func (r *Result) OK(t testing.TB) {
	t.Helper()
	if r.RC != "0" {
		t.Fatalf("step script failed (rc=%s):\n%s", r.RC, r.Out)
	}
}
