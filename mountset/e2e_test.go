package mountset_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// End-to-end tests: the built commands, as root, inside a private mount
// namespace (nstest). Each script works in a tmpfs on a nstest.TempDir,
// makes a card with mkoverlay, and ends with checkClean, which fails the
// script if a loop device backed by the card or a mount under the scratch
// directory is left *inside* the namespace (the namespace going away would
// hide such a leak from the host-side check).

// scratch is the common start of every script: $D is a tmpfs, the card
// $D/card.img is made by mkoverlay and recorded in $OVPKG_CONFIG, the card
// mounts on $D/card, and $D/root is a small root tree for --root.
func scratch(dir string) string {
	return fmt.Sprintf(`
D=%s
mount -t tmpfs -o size=512m scratch "$D"
export OVPKG_CONFIG=$D/ovpkg.conf
mkoverlay 64 "$D/card.img" >/dev/null
echo "MOUNTPOINT=$D/card" >> "$OVPKG_CONFIG"
R=$D/root
mkdir -p $R/usr/local/bin $R/usr/bin $R/etc $R/var/lib $R/opt $R/srv $R/proc $R/tmp
ln -s usr/bin $R/bin
echo base > $R/usr/bin/tool
echo 'root:x:0:0::/root:/bin/sh' > $R/etc/passwd
checkClean() {
	local l m
	l=$(losetup -j "$D/card.img" || true)
	m=$(awk -v d="$D/" 'index($5, d) == 1' /proc/self/mountinfo)
	if [ -n "$l$m" ]; then echo "LEAK: loop [$l] mounts [$m]" >&2; return 1; fi
	if [ -e /run/ovpkg/mounts.json ]; then echo "LEAK: record left" >&2; return 1; fi
	echo CLEAN
}
overlays() {
	awk -v d="$D/" 'index($5, d) == 1 { for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "overlay") n++; break } }
		END { print n+0 }' /proc/self/mountinfo
}
`, dir)
}

func run(t *testing.T, script string, env ...string) nstest.Result {
	t.Helper()
	dir := nstest.TempDir(t)
	return nstest.Run(t, scratch(dir)+script, env...)
}

func mustRun(t *testing.T, script string, env ...string) nstest.Result {
	t.Helper()
	r := run(t, script, env...)
	if r.Code != 0 {
		t.Fatalf("script failed: %s", r)
	}
	return r
}

func want(t *testing.T, r nstest.Result, subs ...string) {
	t.Helper()
	all := r.Stdout + r.Stderr
	for _, s := range subs {
		if !strings.Contains(all, s) {
			t.Errorf("output lacks %q:\n%s", s, r)
		}
	}
}

func TestE2EUsrLocalLandsOnCardAndSurvivesEject(t *testing.T) {
	// Over the real / inside the namespace: default directory set.
	r := mustRun(t, `
F=/usr/local/ovpkg-e2e-$$
[ ! -e $F ]
ovmount
grep -q " /usr .* - overlay ovpkg " /proc/self/mountinfo
grep -q " /etc .* - overlay ovpkg " /proc/self/mountinfo
echo on-the-card > $F
test -f $D/card/ovpkg/layers/0001/tree$F
# No pipe into a program from /usr here: it would hold /usr (and be named).
eject > $D/out; cat $D/out
[ ! -e $F ] && echo BASE-UNCHANGED
ovmount >/dev/null
cat $F
rm $F
eject >/dev/null
[ ! -e $F ]
e2fsck -fn "$D/card.img?offset=1048576" >/dev/null && echo FSCK-OK
checkClean
`)
	want(t, r, "card is safe to remove", "BASE-UNCHANGED", "on-the-card", "FSCK-OK", "CLEAN")
}

func TestE2EBaseNeverChanges(t *testing.T) {
	r := mustRun(t, `
before=$(cd $R && find . -printf '%p %s %m\n' | sort | md5sum)
ovmount --root $R >/dev/null
echo new > $R/usr/local/bin/new
echo changed >> $R/etc/passwd
rm $R/usr/bin/tool
mkdir $R/var/lib/pkg
[ ! -e $R/usr/bin/tool ] && echo WHITEOUT-HIDES
uovmount --root $R >/dev/null
after=$(cd $R && find . -printf '%p %s %m\n' | sort | md5sum)
[ "$before" = "$after" ] && echo BASE-SAME
grep -c changed $R/etc/passwd || true
ovmount --root $R >/dev/null
[ ! -e $R/usr/bin/tool ] && grep -q changed $R/etc/passwd && cat $R/usr/local/bin/new
eject --root $R >/dev/null
after2=$(cd $R && find . -printf '%p %s %m\n' | sort | md5sum)
[ "$before" = "$after2" ] && echo BASE-SAME-AFTER-EJECT
checkClean
`)
	want(t, r, "WHITEOUT-HIDES", "BASE-SAME", "new", "BASE-SAME-AFTER-EJECT", "CLEAN")
}

func TestE2EIdempotent(t *testing.T) {
	r := mustRun(t, `
ovmount --root $R >/dev/null
before=$(cat /proc/self/mountinfo; losetup -j $D/card.img)
ovmount --root $R
after=$(cat /proc/self/mountinfo; losetup -j $D/card.img)
[ "$before" = "$after" ] && echo UNCHANGED
ovmount --root $R --json | grep '"already_mounted": true' >/dev/null && echo JSON-SAYS-SO
echo "overlays: $(overlays)"
eject --root $R >/dev/null
checkClean
`)
	want(t, r, "already mounted", "nothing changed", "UNCHANGED", "JSON-SAYS-SO", "overlays: 4", "CLEAN")
}

func TestE2ERollbackWhenThirdOverlayFails(t *testing.T) {
	// var, the third of five directories, sits on an overlay that is
	// itself over an overlay: the kernel refuses a third level of stacking
	// (EINVAL, maximum stacking depth), a real failure of the third mount.
	r := run(t, `
echo 'OVERLAY_DIRS="usr etc var opt srv"' >> $OVPKG_CONFIG
mkdir -p $D/n/l1 $D/n/u1 $D/n/w1 $D/n/m1 $D/n/u2 $D/n/w2
mount -t overlay nest1 -o lowerdir=$D/n/l1,upperdir=$D/n/u1,workdir=$D/n/w1 $D/n/m1
mount -t overlay nest2 -o lowerdir=$D/n/m1,upperdir=$D/n/u2,workdir=$D/n/w2 $R/var
set +e
ovmount --root $R
echo "exit $?"
set -e
umount $R/var $D/n/m1
echo "overlays left: $(overlays)"
[ -z "$(losetup -j $D/card.img)" ] && echo NO-LOOP
[ ! -e /run/ovpkg/mounts.json ] && echo NO-RECORD
grep -q " $D/card " /proc/self/mountinfo || echo CARD-UNMOUNTED
sed -i '/OVERLAY_DIRS/d' $OVPKG_CONFIG
ovmount --root $R >/dev/null && eject --root $R >/dev/null
checkClean
`)
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	want(t, r, "overlay 3 of 5", "2 overlay(s) already mounted were unmounted again", "exit 1",
		"overlays left: 0", "NO-LOOP", "NO-RECORD", "CARD-UNMOUNTED", "CLEAN")
}

func TestE2EEjectRefusedWhileBusy(t *testing.T) {
	r := mustRun(t, `
ovmount --root $R >/dev/null
(cd $R/usr/local && exec sleep 60) &
cwdpid=$!
sleep 0.2
set +e
eject --root $R; echo "exit $?"
uovmount --root $R; echo "uexit $?"
set -e
echo "overlays after refusal: $(overlays)"
kill $cwdpid; wait $cwdpid 2>/dev/null || true
exec 7<$R/usr/bin/tool
set +e
eject --root $R; echo "exit $?"
set -e
echo "overlays after refusal 2: $(overlays)"
exec 7<&-
sleep 60 < $R/etc/passwd &
fdpid=$!
sleep 0.2
set +e
eject --root $R; echo "exit $?"
set -e
kill $fdpid; wait $fdpid 2>/dev/null || true
eject --root $R | tail -1
checkClean
echo "cwd=$cwdpid fd=$fdpid shell=$$"
`)
	want(t, r, "exit 1", "uexit 1", "overlays after refusal: 4", "overlays after refusal 2: 4", "cwd /", "fd 7", "fd 0",
		"card is safe to remove", "CLEAN")
	// Each refusal names the PID.
	var cwd, fd, shell int
	for _, l := range strings.Split(r.Stdout, "\n") {
		if strings.HasPrefix(l, "cwd=") {
			fmt.Sscanf(l, "cwd=%d fd=%d shell=%d", &cwd, &fd, &shell)
		}
	}
	for _, pid := range []int{cwd, fd, shell} {
		if pid == 0 || !strings.Contains(r.Stderr, fmt.Sprintf("PID %d ", pid)) {
			t.Errorf("PID %d not named:\n%s", pid, r)
		}
	}
	if strings.Contains(r.Stderr, "MNT_DETACH") || strings.Contains(r.Stdout+r.Stderr, "lazy") {
		t.Errorf("lazy unmount mentioned:\n%s", r)
	}
}

func TestE2EEjectRefusedWhileBindMounted(t *testing.T) {
	// A bind mount of an overlaid directory holds no file open, yet it
	// keeps the overlay, and so the card and the loop device, alive.
	r := mustRun(t, `
ovmount --root $R >/dev/null
mkdir -p $D/elsewhere
mount --bind $R/usr/local $D/elsewhere
set +e
eject --root $R; echo "exit $?"
set -e
echo "overlays: $(overlays)"
umount $D/elsewhere
eject --root $R >/dev/null
checkClean
`)
	want(t, r, "exit 1", "also mounted on ", "/elsewhere", "overlays: 5", "CLEAN") // 4 + the bind
}

func TestE2EEjectFromBinaryUnderUsrBin(t *testing.T) {
	// Over the real /: the binary is copied into the overlaid /usr/bin (so
	// it lives on the card through /usr) and ejects from there.
	r := mustRun(t, `
ovmount >/dev/null
B=/usr/bin/ovpkg-e2e-$$
cp "$(command -v ovpkg)" $B
test -f $D/card/ovpkg/layers/0001/tree$B
$B uovmount > $D/out; cat $D/out
[ ! -e $B ] && echo UOVMOUNT-FROM-USR-BIN
echo "overlays: $(awk '$5 == "/usr"' /proc/self/mountinfo | wc -l)"
ovmount >/dev/null
$B eject > $D/out; cat $D/out
[ ! -e $B ] && echo GONE-FROM-BASE
checkClean
`)
	want(t, r, "unmounted /usr", "UOVMOUNT-FROM-USR-BIN", "overlays: 0", "card is safe to remove", "GONE-FROM-BASE", "CLEAN")
}

func TestE2EEjectFromBaseBinaryThroughOverlay(t *testing.T) {
	// The usual install: ovpkg in the base's /usr (make install puts it in
	// /usr/local/sbin), run through the overlay once /usr is overlaid.
	r := mustRun(t, `
mkdir -p $R/usr/local/sbin
cp "$(command -v ovpkg)" $R/usr/local/sbin/ovpkg
ovmount --root $R >/dev/null
[ ! -e $D/card/ovpkg/layers/0001/tree/usr/local/sbin/ovpkg ] && echo NOT-ON-CARD
$R/usr/local/sbin/ovpkg eject --root $R > $D/out; cat $D/out
checkClean
`)
	want(t, r, "NOT-ON-CARD", "card is safe to remove", "CLEAN")
}

func TestE2EUovmountKeepsCard(t *testing.T) {
	r := mustRun(t, `
ovmount --root $R >/dev/null
uovmount --root $R
echo "overlays: $(overlays)"
grep -q " $D/card .* ext2 " /proc/self/mountinfo && echo CARD-STILL-MOUNTED
uovmount --root $R
ovmount --root $R
echo "overlays: $(overlays)"
eject --root $R >/dev/null
set +e
eject --root $R; echo "exit $?"
uovmount --root $R; echo "exit $?"
set -e
checkClean
`)
	want(t, r, "overlays: 0", "CARD-STILL-MOUNTED", "no overlays are mounted", "overlays mounted again", "overlays: 4",
		"no card is mounted by ovpkg", "exit 1", "CLEAN")
}

func TestE2EPartialStateCompletedOrEjected(t *testing.T) {
	// The state an interrupted ovmount (or a hand-made umount) leaves:
	// record and card present, some overlays missing.
	r := mustRun(t, `
ovmount --root $R >/dev/null
umount $R/opt $R/var
echo "overlays: $(overlays)"
ovmount --root $R >/dev/null
echo "overlays after ovmount: $(overlays)"
umount $R/opt
eject --root $R >/dev/null
echo "overlays after eject: $(overlays)"
checkClean
`)
	want(t, r, "overlays: 2", "overlays after ovmount: 4", "overlays after eject: 0", "CLEAN")
}

// ovmount killed right after it mounted the card (before any overlay):
// the record written before the mount lets the next ovmount finish the
// job, and eject take everything down.
func TestE2EKilledAfterCardMount(t *testing.T) {
	r := mustRun(t, `
if OVPKG_TEST_CRASH_AT=card-mounted ovmount --root $R; then echo "crash point not reached"; exit 1; fi
echo "overlays: $(overlays)"
ovmount --root $R
echo "overlays after ovmount: $(overlays)"
eject --root $R >/dev/null
echo "overlays after eject: $(overlays)"
checkClean
`)
	want(t, r, "overlays: 0", "overlays mounted again", "overlays after ovmount: 4", "overlays after eject: 0", "CLEAN")
}

func TestE2ELockNamesHolder(t *testing.T) {
	r := mustRun(t, `
echo "$$ ovpkg install demo" > /run/ovpkg/lock
(exec 9>>/run/ovpkg/lock; flock 9; exec sleep 30) >/dev/null 2>&1 &
fl=$!
sleep 0.2
set +e
ovmount --root $R; echo "exit $?"
set -e
kill $fl; wait $fl 2>/dev/null || true
ovmount --root $R >/dev/null && eject --root $R >/dev/null
checkClean
echo "shell=$$"
`)
	want(t, r, "another ovpkg command is running", "exit 1", "CLEAN")
	var shell int
	for _, l := range strings.Split(r.Stdout, "\n") {
		fmt.Sscanf(l, "shell=%d", &shell)
	}
	if !strings.Contains(r.Stderr, fmt.Sprintf("PID %d ", shell)) {
		t.Errorf("lock holder PID %d not named:\n%s", shell, r)
	}
}

// badImage runs ovmount on a card spoiled by spoil and checks it is
// refused with msg, leaving nothing behind.
func badImage(t *testing.T, spoil string, msgs ...string) {
	t.Helper()
	r := run(t, spoil+`
set +e
ovmount --root $R; echo "exit $?"
set -e
echo "overlays: $(overlays)"
checkClean
`)
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	want(t, r, append([]string{"exit 1", "overlays: 0", "CLEAN"}, msgs...)...)
}

func TestE2EBadImages(t *testing.T) {
	t.Run("truncated", func(t *testing.T) {
		badImage(t, `truncate -s 20M $D/card.img`, "truncated")
	})
	t.Run("zeroed superblock", func(t *testing.T) {
		badImage(t, `dd if=/dev/zero of=$D/card.img bs=1024 seek=1025 count=1 conv=notrunc status=none`, "no ext2")
	})
	t.Run("wrong filesystem", func(t *testing.T) {
		badImage(t, `truncate -s 63M $D/part; mkswap -q $D/part >/dev/null
dd if=$D/part of=$D/card.img bs=1M seek=1 conv=notrunc status=none; rm $D/part`, "no ext2")
	})
	t.Run("partition past the end", func(t *testing.T) {
		// MBR entry 1's sector count (offset 446+12) set to 1,000,000 sectors.
		badImage(t, `printf '\x40\x42\x0f\x00' | dd of=$D/card.img bs=1 seek=458 conv=notrunc status=none`, "partition 1 ends at byte 513048576")
	})
	t.Run("unknown image", func(t *testing.T) {
		badImage(t, `sed -i 's/^SD_UUID=.*/SD_UUID=00000000-0000-4000-8000-000000000000/' $OVPKG_CONFIG`,
			"UUID", "--trust")
	})
	t.Run("world-writable config", func(t *testing.T) {
		badImage(t, `chmod 666 $OVPKG_CONFIG`, "writable by group or others", "chmod go-w")
	})
	t.Run("symlinked config", func(t *testing.T) {
		badImage(t, `mv $OVPKG_CONFIG $D/real.conf; ln -s $D/real.conf $OVPKG_CONFIG`, "symbolic link")
	})
	t.Run("missing image", func(t *testing.T) {
		badImage(t, `rm $D/card.img`, "does not exist")
	})
	t.Run("unclean without e2fsck", func(t *testing.T) {
		// s_state (superblock offset 58) = 0: not cleanly unmounted. PATH
		// without the sbin directories: e2fsck cannot be run.
		badImage(t, `printf '\x00\x00' | dd of=$D/card.img bs=1 seek=$((1048576+1024+58)) conv=notrunc status=none
export PATH=$(dirname "$(command -v ovpkg)"):/usr/bin:/bin`, "not cleanly unmounted", "e2fsck -f", "--force")
	})
}

func TestE2EUncleanCardCheckFails(t *testing.T) {
	// An e2fsck that cannot repair (exit 4) makes ovmount refuse with the
	// repair command; a stand-in reports it, as a real one would for
	// damage -p may not fix.
	r := mustRun(t, `
printf '\x00\x00' | dd of=$D/card.img bs=1 seek=$((1048576+1024+58)) conv=notrunc status=none
mkdir $D/fakebin
printf '#!/bin/sh\necho "$*: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY." >&2\nexit 4\n' > $D/fakebin/e2fsck
chmod +x $D/fakebin/e2fsck
set +e
PATH=$D/fakebin:$PATH ovmount --root $R; echo "exit $?"
set -e
echo "overlays: $(overlays)"
checkClean
`)
	want(t, r, "exit 1", "could not repair", "exit 4", "UNEXPECTED INCONSISTENCY", "e2fsck -f '"+"", "card.img?offset=1048576'",
		"overlays: 0", "CLEAN")
}

func TestE2EUncleanCard(t *testing.T) {
	r := mustRun(t, `
unclean() { printf '\x00\x00' | dd of=$D/card.img bs=1 seek=$((1048576+1024+58)) conv=notrunc status=none; }
unclean
ovmount --root $R
eject --root $R >/dev/null
unclean
PATH=$(dirname "$(command -v ovpkg)"):/usr/bin:/bin ovmount --root $R --force
eject --root $R >/dev/null
e2fsck -fn "$D/card.img?offset=1048576" >/dev/null && echo FSCK-OK
checkClean
`)
	want(t, r, "checking it with e2fsck -p", "mounting it unchecked because of --force", "FSCK-OK", "CLEAN")
}

func TestE2ETrustUnknownImage(t *testing.T) {
	r := mustRun(t, `
sed -i 's/^SD_UUID=.*/SD_UUID=00000000-0000-4000-8000-000000000000/' $OVPKG_CONFIG
ovmount --root $R --trust
eject --root $R >/dev/null
checkClean
`)
	want(t, r, "because of --trust", "CLEAN")
}

func TestE2EHundredCyclesNoLeak(t *testing.T) {
	r := mustRun(t, `
before_loops=$(ls /sys/block | grep -c loop || true)
before_mounts=$(wc -l < /proc/self/mountinfo)
for i in $(seq 100); do
	ovmount --root $R >/dev/null
	echo $i >> $R/usr/local/count
	eject --root $R >/dev/null
done
after_loops=$(ls /sys/block | grep -c loop || true)
after_mounts=$(wc -l < /proc/self/mountinfo)
echo "mounts $before_mounts -> $after_mounts"
[ "$before_mounts" = "$after_mounts" ] && echo SAME-MOUNTS
echo "loop nodes $before_loops -> $after_loops"
ovmount --root $R >/dev/null; wc -l < $R/usr/local/count; eject --root $R >/dev/null
checkClean
`)
	want(t, r, "SAME-MOUNTS", "100\n", "CLEAN")
}
