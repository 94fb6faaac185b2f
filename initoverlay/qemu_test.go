package initoverlay_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/internal/qemutest"
)

// The real init of the test root: it reports, runs the step script the
// kernel command line names (teststep=NAME, passed on to init as its
// environment), and powers the machine off.
const realInit = `#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
echo "<1>REALINIT" > /dev/kmsg
echo "REALINIT pid=$$ args=[$*] step=$teststep"
echo "--- boot-state"; cat /run/ovpkg/boot-state 2>&1; echo "--- end"
rc=none
if [ -f "/etc/test/$teststep.sh" ]; then
	(fail() { echo "FAIL: $*"; exit 1; }; set -ex; . "/etc/test/$teststep.sh") 2>&1; rc=$?
fi
echo "STEPDONE rc=$rc"
sync
poweroff -f
`

// rig is what every boot test uses: the kernel, initramfs, busybox and
// the ovpkg test build.
type rig struct {
	k      *qemutest.Kernel
	bb     string
	initrd string
	ovpkg  string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a kernel under QEMU")
	}
	nstest.Need(t, "qemu-system-x86_64", "mke2fs", "debugfs", "e2fsck")
	r := &rig{k: qemutest.DebianKernel(t), bb: qemutest.Busybox(t)}
	r.initrd = qemutest.Initramfs(t, r.k, r.bb)
	r.ovpkg = filepath.Join(nstest.Bin(t), "ovpkg")
	return r
}

// root builds the root disk: busybox, the ovpkg test build as
// /sbin/ovpkg and /sbin/init-overlay, the modules init-overlay loads,
// conf as /etc/ovpkg.conf (if not empty), the step scripts.
func (r *rig) root(t *testing.T, conf string, steps map[string]string, extra func(d *qemutest.Dir)) string {
	t.Helper()
	d := qemutest.NewDir(t)
	d.Busybox(r.bb)
	d.Mkdir("proc", "sys", "dev", "run", "tmp", "overlay", "mnt/sd", "root", "usr/share", "var/lib", "etc/test", "sbin")
	d.Copy("sbin/ovpkg", r.ovpkg)
	d.Symlink("sbin/init-overlay", "ovpkg")
	d.Write("sbin/init", realInit, 0o755)
	d.Write("etc/motd", "base motd\n", 0o644)
	d.Write("usr/share/base.txt", "from the base\n", 0o644)
	d.Write("etc/fstab", "/dev/vdb /mnt/sd ext2 defaults 0 0\n", 0o644)
	d.Modules(r.k, "overlay", "loop", "ext4")
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

// card makes a card image with the test build's mkoverlay and puts it on
// an ext2 disk as /card.img; it returns the disk and the config lines
// that name it in the guest.
func (r *rig) card(t *testing.T, mutate func(img string)) (disk, conf string) {
	t.Helper()
	d := qemutest.NewDir(t)
	cfg := filepath.Join(t.TempDir(), "ovpkg.conf")
	img := d.P("card.img")
	out, err := exec.Command(filepath.Join(filepath.Dir(r.ovpkg), "mkoverlay"), "--config", cfg, "16", img).CombinedOutput()
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

// boot is one boot's outcome.
type boot struct {
	out   string            // console between REALINIT and STEPDONE
	state map[string]string // /run/ovpkg/boot-state
	rc    string
	took  time.Duration
}

// bootOnce boots the disks with the given extra command line and step,
// waits for the real init to finish and the machine to power off.
func (r *rig) bootOnce(t *testing.T, name, cmdline, step string, disks ...string) *boot {
	t.Helper()
	vm := qemutest.Boot(t, qemutest.Options{Kernel: r.k, Initrd: r.initrd, Disks: disks, Name: name,
		Append: "quiet root=/dev/vda ro init=/sbin/init-overlay teststep=" + step + " " + cmdline})
	m := vm.Wait(`REALINIT pid=(\d+) args=\[(.*)\]`)
	if m[1] != "1" {
		t.Fatalf("%s: the real init runs as PID %s, not 1", name, m[1])
	}
	done := vm.Wait(`STEPDONE rc=(\S+)`)
	took := vm.WaitExit()
	b := &boot{out: vm.Output(), rc: done[1], took: took, state: map[string]string{}}
	if i, j := strings.Index(b.out, "--- boot-state\n"), strings.Index(b.out, "--- end"); i >= 0 && j > i {
		f, err := config.Parse("boot-state", strings.NewReader(b.out[i+len("--- boot-state\n"):j]))
		if err != nil {
			t.Fatalf("%s: boot-state: %v", name, err)
		}
		for _, k := range f.Keys() {
			b.state[k], _ = f.Get(k)
		}
	}
	t.Logf("%s: powered off after %v (init-overlay: %s ms of %s ms to the real init; %s)", name, took.Round(time.Millisecond),
		sub(b.state["T_EXEC_MS"], b.state["T_START_MS"]), b.state["T_EXEC_MS"], b.state["PHASES_MS"])
	if vm.Panicked() {
		t.Fatalf("%s: kernel panic", name)
	}
	return b
}

func sub(a, b string) string {
	var x, y float64
	fmt.Sscan(a, &x)
	fmt.Sscan(b, &y)
	return fmt.Sprintf("%.1f", x-y)
}

func (b *boot) want(t *testing.T, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if got := b.state[kv[i]]; got != kv[i+1] {
			t.Errorf("boot-state %s=%q, want %q\n%s", kv[i], got, kv[i+1], b.out)
		}
	}
}

func (b *boot) has(t *testing.T, re string) {
	t.Helper()
	if !regexp.MustCompile(re).MatchString(b.out) {
		t.Errorf("console lacks %q:\n%s", re, b.out)
	}
}

func (b *boot) ok(t *testing.T) {
	t.Helper()
	if b.rc != "0" {
		t.Fatalf("step script failed (rc=%s):\n%s", b.rc, b.out)
	}
}

// Checks every overlay boot makes: the real init is PID 1 in the new
// root, the base is read-only at /overlay/robase, the root is writable.
const checkOverlayRoot = `
cat /proc/self/mountinfo
grep -q ' / / .* - overlay ovpkg-root ' /proc/self/mountinfo
grep -q ' /overlay/robase ro[, ]' /proc/self/mountinfo
touch /overlay/robase/x 2>/dev/null && fail the base is writable
echo written > /root/scratch && cat /root/scratch
test -f /overlay/robase/etc/motd
`

func TestBootTmpfs(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	root := r.root(t, "BOOT_UPPER=tmpfs\nBOOT_SIZE=32m\n", map[string]string{"1": checkOverlayRoot + `
grep -q ' /overlay/rwdata .* - tmpfs ovpkg-rwdata .*size=32768k' /proc/self/mountinfo
case "$(tr '\0' ' ' < /proc/1/cmdline)" in *"/sbin/init one two ") ;; *) fail "init's arguments";; esac
`}, nil)
	b := r.bootOnce(t, "tmpfs", "-- one two", "1", root)
	b.ok(t)
	b.want(t, "STATE", "ok", "UPPER", "tmpfs", "REQUESTED", "tmpfs", "BASE", "/overlay/robase", "INIT", "/sbin/init")
	b.has(t, `REALINIT pid=1 args=\[one two\] step=1`)

	// Without an initramfs: the kernel leaves only the root mounted.
	b = r.bootOnce(t, "tmpfs-bare", "qemutest.bare -- one two", "1", root)
	b.ok(t)
	b.want(t, "STATE", "ok", "UPPER", "tmpfs")
}

func TestBootOffSwitches(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	check := `grep -q ' / / ro[, ].* - ext4 /dev/vda ' /proc/self/mountinfo
grep -q ' /overlay ' /proc/self/mountinfo && fail an overlay is mounted
true
`
	root := r.root(t, "BOOT_UPPER=tmpfs\n", map[string]string{"1": check}, nil)
	b := r.bootOnce(t, "upper-off", "ovpkg.upper=off", "1", root)
	b.ok(t)
	b.want(t, "STATE", "off", "UPPER", "none")
	b.has(t, `init-overlay: overlay off`)

	root = r.root(t, "BOOT_UPPER=tmpfs\n", map[string]string{"1": check}, func(d *qemutest.Dir) {
		d.Write("overlay/disable", "", 0o644)
	})
	b = r.bootOnce(t, "disable-file", "", "1", root)
	b.ok(t)
	b.want(t, "STATE", "disabled", "UPPER", "none")
}

// e2fsckCard checks the card image inside an ext2 data disk with e2fsck
// -fn (an independent tool), after dumping it with debugfs.
func e2fsckCard(t *testing.T, disk string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "card.img")
	if out, err := exec.Command("debugfs", "-R", "dump /card.img "+img, disk).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	out, err := exec.Command("e2fsck", "-fn", img+"?offset=1048576").CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn of the card after the boots: %v\n%s", err, out)
	}
	return img
}

func TestBootCard(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	disk, conf := r.card(t, nil)
	root := r.root(t, conf, map[string]string{
		"1": checkOverlayRoot + `
grep -q ' /overlay/card .* - ext2 /dev/loop' /proc/self/mountinfo
grep -q ' /usr .* - overlay ovpkg .*lowerdir.*/overlay/robase/usr' /proc/self/mountinfo
ovpkg status
echo changed > /etc/motd
echo mine > /etc/mine
ovpkg __txn-test /usr/share/txn.txt "from a transaction"
ovpkg history
`,
		"2": `
test "$(cat /etc/motd)" = changed
test "$(cat /etc/mine)" = mine
test "$(cat /usr/share/txn.txt)" = "from a transaction"
test "$(cat /overlay/robase/etc/motd)" = "base motd"
test ! -e /root/scratch
ovpkg history | grep -q __txn-test
`}, nil)
	b := r.bootOnce(t, "card-1", "", "1", root, disk)
	b.ok(t)
	b.want(t, "STATE", "ok", "UPPER", "card", "CARD_IMAGE", "/mnt/sd/card.img", "CARD_MOUNT", "/overlay/card")
	b = r.bootOnce(t, "card-2", "", "2", root, disk)
	b.ok(t)
	b.want(t, "STATE", "ok", "UPPER", "card")
	e2fsckCard(t, disk)
}

func TestBootMissingCard(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	_, conf := r.card(t, nil)
	conf += "BOOT_CARD_WAIT=0.5\n"
	root := r.root(t, conf, map[string]string{
		"tmpfs": `grep -q ' / / .* - overlay ovpkg-root ' /proc/self/mountinfo`,
		"ro":    `grep -q ' / / ro[, ].* - ext4 /dev/vda ' /proc/self/mountinfo`,
	}, nil)
	b := r.bootOnce(t, "missing-tmpfs", "", "tmpfs", root) // no card disk: /dev/vdb never appears
	b.ok(t)
	b.want(t, "STATE", "fallback", "UPPER", "tmpfs", "REQUESTED", "card", "FALLBACK", "tmpfs")
	b.has(t, `THE CARD IS NOT USED: .*/dev/vdb did not appear`)

	b = r.bootOnce(t, "missing-ro", "ovpkg.fallback=ro", "ro", root)
	b.ok(t)
	b.want(t, "STATE", "fallback", "UPPER", "none", "FALLBACK", "ro")

	// stop: the console says why and the machine halts (no real init).
	vm := qemutest.Boot(t, qemutest.Options{Kernel: r.k, Initrd: r.initrd, Disks: []string{root}, Name: "missing-stop",
		Append: "quiet root=/dev/vda ro init=/sbin/init-overlay ovpkg.fallback=stop"})
	vm.Wait(`init-overlay: stopping \(BOOT_FALLBACK=stop\): card: .*did not appear`)
	vm.Wait(`reboot: System halted`)
	if strings.Contains(vm.Output(), "REALINIT") || vm.Panicked() {
		t.Errorf("stop policy: the real init ran or the kernel panicked:\n%s", vm.Output())
	}
}

func TestBootCorruptCard(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	disk, conf := r.card(t, func(img string) {
		// Wipe the card filesystem's superblock (partition at 1 MiB).
		f, err := os.OpenFile(img, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, 1024), 1<<20+1024); err != nil {
			t.Fatal(err)
		}
		f.Close()
	})
	root := r.root(t, conf, map[string]string{"1": checkOverlayRoot}, nil)
	b := r.bootOnce(t, "corrupt", "", "1", root, disk)
	b.ok(t)
	b.want(t, "STATE", "fallback", "UPPER", "tmpfs")
	if !strings.Contains(b.state["REASON"], "superblock") {
		t.Errorf("REASON=%q does not name the superblock", b.state["REASON"])
	}
}

func TestBootTrial(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	steps := map[string]string{
		"install": `ovpkg __txn-test /usr/share/trial.txt "on trial"
ovpkg boot try
`,
		"confirm": `test "$(cat /usr/share/trial.txt)" = "on trial"
ovpkg boot status
ovpkg boot ok
`,
		"noconfirm": `test "$(cat /usr/share/trial.txt)" = "on trial"`,
		"kept":      `test "$(cat /usr/share/trial.txt)" = "on trial"; ovpkg history`,
		"gone":      `test ! -e /usr/share/trial.txt; ovpkg history`,
	}
	for _, confirm := range []bool{true, false} {
		disk, conf := r.card(t, nil)
		root := r.root(t, conf, steps, nil)
		name := map[bool]string{true: "trial-confirmed", false: "trial-unconfirmed"}[confirm]
		b := r.bootOnce(t, name+"-1", "", "install", root, disk)
		b.ok(t)
		if confirm {
			b = r.bootOnce(t, name+"-2", "", "confirm", root, disk)
			b.ok(t)
			b.want(t, "TRIAL", "on-trial", "TRIAL_BOOT", "1/1")
			b.has(t, `confirmed layers`)
			b = r.bootOnce(t, name+"-3", "", "kept", root, disk)
			b.ok(t)
			b.want(t, "TRIAL", "none")
		} else {
			b = r.bootOnce(t, name+"-2", "", "noconfirm", root, disk)
			b.ok(t)
			b.want(t, "TRIAL", "on-trial")
			b = r.bootOnce(t, name+"-3", "", "gone", root, disk)
			b.ok(t)
			b.want(t, "TRIAL", "dropped")
			b.has(t, `trial-dropped|rolled back`)
		}
		e2fsckCard(t, disk)
	}
}

func TestBootBaseExec(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	disk, conf := r.card(t, nil)
	root := r.root(t, conf, map[string]string{"1": `
echo card > /etc/motd
ovpkg base exec -- sh -c 'echo new base > /etc/motd; echo added > /etc/added'
test "$(cat /overlay/robase/etc/motd)" = "new base"
test "$(cat /etc/motd)" = card
test "$(cat /etc/added)" = added
touch /overlay/robase/x 2>/dev/null && fail the base is writable
ovpkg base exec --json -- true | grep -q '"exit_code": 0'
`}, nil)
	b := r.bootOnce(t, "base-exec", "", "1", root, disk)
	b.ok(t)
	b.has(t, `/etc/motd \(file in card layer`)
}
