package initoverlay_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/qemutest"
)

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
	r := qemutest.NewRig(t)
	root := r.Root(t, "BOOT_UPPER=tmpfs\nBOOT_SIZE=32m\n", map[string]string{"1": checkOverlayRoot + `
grep -q ' /overlay/rwdata .* - tmpfs ovpkg-rwdata .*size=32768k' /proc/self/mountinfo
case "$(tr '\0' ' ' < /proc/1/cmdline)" in *"/sbin/init one two ") ;; *) fail "init's arguments";; esac
`}, nil)
	b := r.BootStep(t, "tmpfs", "-- one two", "1", root)
	b.OK(t)
	b.Want(t, "STATE", "ok", "UPPER", "tmpfs", "REQUESTED", "tmpfs", "BASE", "/overlay/robase", "INIT", "/sbin/init")
	b.Has(t, `REALINIT pid=1 args=\[one two\] step=1`)

	// Without an initramfs: the kernel leaves only the root mounted.
	b = r.BootStep(t, "tmpfs-bare", "qemutest.bare -- one two", "1", root)
	b.OK(t)
	b.Want(t, "STATE", "ok", "UPPER", "tmpfs")
}

func TestBootOffSwitches(t *testing.T) {
	t.Parallel()
	r := qemutest.NewRig(t)
	check := `grep -q ' / / ro[, ].* - ext4 /dev/vda ' /proc/self/mountinfo
grep -q ' /overlay ' /proc/self/mountinfo && fail an overlay is mounted
true
`
	root := r.Root(t, "BOOT_UPPER=tmpfs\n", map[string]string{"1": check}, nil)
	b := r.BootStep(t, "upper-off", "ovpkg.upper=off", "1", root)
	b.OK(t)
	b.Want(t, "STATE", "off", "UPPER", "none")
	b.Has(t, `init-overlay: overlay off`)

	root = r.Root(t, "BOOT_UPPER=tmpfs\n", map[string]string{"1": check}, func(d *qemutest.Dir) {
		d.Write("overlay/disable", "", 0o644)
	})
	b = r.BootStep(t, "disable-file", "", "1", root)
	b.OK(t)
	b.Want(t, "STATE", "disabled", "UPPER", "none")
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
	r := qemutest.NewRig(t)
	disk, conf := r.Card(t, nil)
	root := r.Root(t, conf, map[string]string{
		"1": checkOverlayRoot + `
grep -q ' /overlay/card .* - ext2 /dev/loop' /proc/self/mountinfo
grep -q ' /usr .* - overlay ovpkg .*lowerdir.*/overlay/robase/usr' /proc/self/mountinfo
ovpkg boot status
ovpkg ovmount | grep 'already mounted'
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
ovpkg history | grep test-install
`}, nil)
	b := r.BootStep(t, "card-1", "", "1", root, disk)
	b.OK(t)
	b.Want(t, "STATE", "ok", "UPPER", "card", "CARD_IMAGE", "/mnt/sd/card.img", "CARD_MOUNT", "/overlay/card")
	b = r.BootStep(t, "card-2", "", "2", root, disk)
	b.OK(t)
	b.Want(t, "STATE", "ok", "UPPER", "card")
	e2fsckCard(t, disk)
}

func TestBootMissingCard(t *testing.T) {
	t.Parallel()
	r := qemutest.NewRig(t)
	_, conf := r.Card(t, nil)
	conf += "BOOT_CARD_WAIT=0.5\n"
	root := r.Root(t, conf, map[string]string{
		"tmpfs": `grep -q ' / / .* - overlay ovpkg-root ' /proc/self/mountinfo`,
		"ro":    `grep -q ' / / ro[, ].* - ext4 /dev/vda ' /proc/self/mountinfo`,
	}, nil)
	b := r.BootStep(t, "missing-tmpfs", "", "tmpfs", root) // no card disk: /dev/vdb never appears
	b.OK(t)
	b.Want(t, "STATE", "fallback", "UPPER", "tmpfs", "REQUESTED", "card", "FALLBACK", "tmpfs")
	b.Has(t, `THE CARD IS NOT USED: .*/dev/vdb did not appear`)

	b = r.BootStep(t, "missing-ro", "ovpkg.fallback=ro", "ro", root)
	b.OK(t)
	b.Want(t, "STATE", "fallback", "UPPER", "none", "FALLBACK", "ro")

	// stop: the console says why and the machine halts (no real init).
	vm := qemutest.Boot(t, qemutest.Options{Kernel: r.K, Initrd: r.Initrd, Disks: []string{root}, Name: "missing-stop",
		Append: "quiet root=/dev/vda ro init=/sbin/init-overlay ovpkg.fallback=stop"})
	vm.Wait(`init-overlay: stopping \(BOOT_FALLBACK=stop\): card: .*did not appear`)
	vm.Wait(`reboot: System halted`)
	if strings.Contains(vm.Output(), "REALINIT") || vm.Panicked() {
		t.Errorf("stop policy: the real init ran or the kernel panicked:\n%s", vm.Output())
	}
}

func TestBootCorruptCard(t *testing.T) {
	t.Parallel()
	r := qemutest.NewRig(t)
	disk, conf := r.Card(t, func(img string) {
		// Wipe the card filesystem's superblock (partition at 1 MiB).
		patch(t, img, 1<<20+1024, make([]byte, 1024))
	})
	root := r.Root(t, conf, map[string]string{"1": checkOverlayRoot}, nil)
	b := r.BootStep(t, "corrupt", "", "1", root, disk)
	b.OK(t)
	b.Want(t, "STATE", "fallback", "UPPER", "tmpfs")
	if !strings.Contains(b.State["REASON"], "superblock") {
		t.Errorf("REASON=%q does not name the superblock", b.State["REASON"])
	}

	// Not cleanly unmounted (a power cut) on a root without e2fsck: the
	// fallback with the repair command, or mounted unchecked when
	// BOOT_UNCLEAN=mount says so.
	disk, conf = r.Card(t, func(img string) {
		patch(t, img, 1<<20+1024+58, []byte{0, 0}) // s_state: not clean
	})
	root = r.Root(t, conf, map[string]string{"1": `grep -q ' /overlay/card .* - ext2 /dev/loop' /proc/self/mountinfo`}, nil)
	b = r.BootStep(t, "unclean", "", "none", root, disk)
	b.Want(t, "STATE", "fallback", "UPPER", "tmpfs")
	if !strings.Contains(b.State["REASON"], "e2fsck") {
		t.Errorf("REASON=%q does not say how to repair", b.State["REASON"])
	}
	b = r.BootStep(t, "unclean-mount", "ovpkg.unclean=mount", "1", root, disk)
	b.OK(t)
	b.Want(t, "STATE", "ok", "UPPER", "card")
}

func patch(t *testing.T, file string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestBootTrial(t *testing.T) {
	t.Parallel()
	r := qemutest.NewRig(t)
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
		disk, conf := r.Card(t, nil)
		root := r.Root(t, conf, steps, nil)
		name := map[bool]string{true: "trial-confirmed", false: "trial-unconfirmed"}[confirm]
		b := r.BootStep(t, name+"-1", "", "install", root, disk)
		b.OK(t)
		if confirm {
			b = r.BootStep(t, name+"-2", "", "confirm", root, disk)
			b.OK(t)
			b.Want(t, "TRIAL", "on-trial", "TRIAL_BOOT", "1/1")
			b.Has(t, `confirmed layers`)
			b = r.BootStep(t, name+"-3", "", "kept", root, disk)
			b.OK(t)
			b.Want(t, "TRIAL", "none")
		} else {
			b = r.BootStep(t, name+"-2", "", "noconfirm", root, disk)
			b.OK(t)
			b.Want(t, "TRIAL", "on-trial")
			b = r.BootStep(t, name+"-3", "", "gone", root, disk)
			b.OK(t)
			b.Want(t, "TRIAL", "dropped")
			b.Has(t, `trial-dropped|rolled back`)
		}
		e2fsckCard(t, disk)
	}
}

func TestBootBaseExec(t *testing.T) {
	t.Parallel()
	r := qemutest.NewRig(t)
	disk, conf := r.Card(t, nil)
	root := r.Root(t, conf, map[string]string{"1": `
echo card > /etc/motd
ovpkg base exec -- sh -c 'echo new base > /etc/motd; echo added > /etc/added'
test "$(cat /overlay/robase/etc/motd)" = "new base"
test "$(cat /etc/motd)" = card
test "$(cat /etc/added)" = added
touch /overlay/robase/x 2>/dev/null && fail the base is writable
ovpkg base exec --json -- true | grep -q '"exit_code": 0'
`}, nil)
	b := r.BootStep(t, "base-exec", "", "1", root, disk)
	b.OK(t)
	b.Has(t, `/etc/motd \(file in card layer`)
}
