package txn_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// End-to-end tests: the built commands as root inside a private mount
// namespace (nstest). $R is a small root tree overlaid with --root, the
// card is $D/card.img mounted on $D/card. `ovpkg __txn-test PATH TEXT`
// is a trivial install: it writes PATH through the overlays inside a
// transaction.
func scratch(dir string, sizeMiB int) string {
	return fmt.Sprintf(`
D=%s
mount -t tmpfs -o size=600m scratch "$D"
export OVPKG_CONFIG=$D/ovpkg.conf
mkoverlay %d "$D/card.img" >/dev/null
echo "MOUNTPOINT=$D/card" >> "$OVPKG_CONFIG"
echo "OVERLAY_DIRS=usr etc var" >> "$OVPKG_CONFIG"
R=$D/root
export D R
[ -n "$D" ] && [ "$R" != / ]
mkdir -p $R/usr/bin $R/usr/share/doc/base $R/etc $R/var/lib/dpkg
echo base > $R/usr/bin/tool
echo doc > $R/usr/share/doc/base/README
printf 'root:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n' > $R/etc/passwd
printf 'Package: base-files\nStatus: install ok installed\nVersion: 1\n\n' > $R/var/lib/dpkg/status
# the base as it is, reachable while the overlays hide it
mkdir -p $D/base && mount --bind $R $D/base
O="--root $R"
t() { ovpkg __txn-test $O "$@"; }
layers() { ls $D/card/ovpkg/layers | tr '\n' ' '; }
stack() { tr '\n' ' ' < $D/card/ovpkg/stack; }
# consistent: the stack lists exactly the layer directories, every
# overlay's upper is the top layer, no journal left.
consistent() {
	local s l top
	s=$(sort $D/card/ovpkg/stack | tr '\n' ' '); l=$(layers)
	[ "$s" = "$l" ] || { echo "INCONSISTENT: stack [$s] dirs [$l]" >&2; return 1; }
	top=$(tail -n1 $D/card/ovpkg/stack)
	for d in usr etc var; do
		grep -q " $R/$d .*upperdir=$D/card/ovpkg/layers/$top/tree/$d," /proc/self/mountinfo ||
			{ echo "INCONSISTENT: overlay on $R/$d does not have layer $top as upper" >&2; grep " $R/$d " /proc/self/mountinfo >&2; return 1; }
	done
	[ ! -e $D/card/ovpkg/txn ] || { echo "INCONSISTENT: journal left: $(cat $D/card/ovpkg/txn)" >&2; return 1; }
}
view() { (cd $R && find usr etc var -printf '%%p %%y %%m %%U:%%G %%l\n' | sort; cat $(find usr etc var -type f | sort) | md5sum); }
checkClean() {
	local l m
	umount $D/base
	l=$(losetup -j "$D/card.img" || true)
	m=$(awk -v d="$D/" 'index($5, d) == 1' /proc/self/mountinfo)
	if [ -n "$l$m" ]; then echo "LEAK: loop [$l] mounts [$m]" >&2; return 1; fi
	echo CLEAN
}
`, dir, sizeMiB)
}

func run(t *testing.T, sizeMiB int, script string, env ...string) nstest.Result {
	t.Helper()
	dir := nstest.TempDir(t)
	return nstest.Run(t, scratch(dir, sizeMiB)+script, env...)
}

func mustRun(t *testing.T, script string, env ...string) nstest.Result {
	t.Helper()
	r := run(t, 64, script, env...)
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

func TestE2ETransactionsRollbackCommit(t *testing.T) {
	nstest.Need(t, "python3")
	r := mustRun(t, `
ovmount $O >/dev/null
consistent
t $R/usr/bin/a A
t $R/usr/bin/b B
# two transaction layers and an empty working layer on top
[ "$(stack)" = "0001 0002 0004 0005 " ]
[ -e $D/card/ovpkg/layers/0005/working ] && [ ! -e $D/card/ovpkg/layers/0004/working ]
consistent
# a failing install leaves nothing
if t --fail $R/usr/bin/c C; then echo "fail did not fail"; exit 1; fi
[ ! -e $R/usr/bin/c ]
[ "$(stack)" = "0001 0002 0004 0005 " ]
consistent
ovpkg history $O --json > $D/h.json
grep -q '"stack": \[' $D/h.json
[ "$(grep -c '"event": "txn"' $D/h.json)" = 2 ]
ovpkg history $O
# changes made outside ovpkg land in the working layer, not in a transaction's
t $R/etc/x X
top=$(tail -n1 $D/card/ovpkg/stack)
[ -e $D/card/ovpkg/layers/$top/working ]
rm $R/usr/bin/tool
[ -c $D/card/ovpkg/layers/$top/tree/usr/bin/tool ]
rm -rf $R/usr/share/doc/base && mkdir $R/usr/share/doc/base && echo new > $R/usr/share/doc/base/NEW
# rollback drops the newest transaction and keeps those later changes
ovpkg rollback $O
[ ! -e $R/etc/x ] && [ -e $R/usr/bin/b ] && [ ! -e $R/usr/bin/tool ] && [ -e $R/usr/share/doc/base/NEW ]
[ "$(stack)" = "0001 0002 0004 $top " ]
consistent
ovpkg rollback $O 2
[ ! -e $R/usr/bin/a ] && [ ! -e $R/usr/bin/b ] && [ ! -e $R/usr/bin/tool ]
[ "$(stack)" = "0001 $top " ]
consistent
t $R/etc/x X
t $R/usr/bin/d D
# a file added and removed by later transactions in a directory the base
# lacks: after the squash no whiteout may remain there (the kernel would
# list it as a name that cannot be opened)
t $R/usr/share/fresh/f1 1
t $R/usr/share/fresh/f2 2
ovpkg __txn-test $O --exec "rm $R/usr/share/fresh/f1" rm-f1
[ "$(ls $R/usr/share/fresh)" = f2 ]
view > $D/before
ovpkg commit $O
[ "$(ls $R/usr/share/fresh)" = f2 ]
[ ! -e $D/card/ovpkg/layers/$(cat $D/card/ovpkg/stack)/tree/usr/share/fresh/f1 ]
[ "$(wc -w < $D/card/ovpkg/stack)" = 1 ]
sq=$(cat $D/card/ovpkg/stack)
consistent
view > $D/after
diff $D/before $D/after
# whiteout and opaque directory survived the squash
[ -c $D/card/ovpkg/layers/$sq/tree/usr/bin/tool ]
python3 -c 'import os,sys; sys.exit(0 if os.getxattr(sys.argv[1],"trusted.overlay.opaque")==b"y" else 1)' $D/card/ovpkg/layers/$sq/tree/usr/share/doc/base
[ ! -e $D/card/ovpkg/layers/$sq/tree/usr/share/doc/base/README ]
# base untouched
[ "$(cat $D/base/usr/bin/tool)" = base ] && [ -e $D/base/usr/share/doc/base/README ] && [ ! -e $D/base/usr/bin/a ]
# the squashed card survives eject and ovmount
ovpkg eject $O >/dev/null
ovmount $O >/dev/null
view > $D/again
diff $D/before $D/again
ovpkg history $O
# a package's file removed by hand, then the package rolled back: the
# whiteout left in the working layer hides nothing and is cleaned up
t $R/usr/share/pkg/f1 1
rm $R/usr/share/pkg/f1
t $R/usr/bin/e E
echo by-hand > $R/etc/by-hand
ovpkg rollback $O 2
[ -z "$(ls -A $R/usr/share/pkg)" ] || { ls -la $R/usr/share/pkg; exit 1; }
[ -z "$(find $D/card/ovpkg/layers/*/tree/usr/share/pkg -type c)" ] || { echo "whiteout hiding nothing left"; exit 1; }
[ -e $R/etc/by-hand ] && [ ! -e $R/usr/bin/e ]
consistent
# nothing left to roll back, clearly
if ovpkg rollback $O 2> $D/err; then echo "rollback past the first layer worked"; exit 1; fi
cat $D/err
ovpkg eject $O >/dev/null
checkClean
`)
	want(t, r, "CLEAN", "squashed into", "cannot roll back past the first layer")
}

// Kill the process at each step of a transaction; the next command (or an
// eject + ovmount, as after a pulled card) finds the state before or
// after it, never a mix, and says which.
func TestE2ECrashAtEachStep(t *testing.T) {
	type tc struct {
		step      string
		committed bool
	}
	cases := []tc{
		{"begin-journal", false}, {"begin-layer", false}, {"restack-down", false}, {"begin-restacked", false},
		{"before-pm", false}, {"pm", false}, {"commit-stack", false}, {"commit-history", true}, {"commit-journal", true}, {"commit-working", true},
	}
	var b strings.Builder
	b.WriteString("ovmount $O >/dev/null\nt $R/usr/bin/first 1\n")
	for i, c := range cases {
		f := fmt.Sprintf("$R/usr/bin/f%d", i)
		fmt.Fprintf(&b, `
echo "== %[1]s"
view > $D/v0
s0=$(stack)
if OVPKG_TEST_CRASH_AT=%[1]s ovpkg __txn-test $O %[2]s X; then echo "crash point %[1]s not reached"; exit 1; fi
if [ %[3]d = 1 ]; then
	# pulled card: everything goes, then ovmount
	ovpkg eject $O >/dev/null 2>&1 || { grep overlay /proc/self/mountinfo >&2; exit 1; }
fi
# ovmount recovers (and says so); history shows the result
ovmount $O > $D/msg 2>&1
ovpkg history $O >> $D/msg 2>&1
cat $D/msg
consistent
if [ %[4]v = true ]; then
	[ -e %[2]s ] || { echo "%[1]s: committed transaction lost"; exit 1; }
	[ %[1]s = commit-working ] || grep "was committed before the interruption" >/dev/null $D/msg
else
	[ ! -e %[2]s ] || { echo "%[1]s: interrupted transaction visible"; exit 1; }
	[ "$(stack)" = "$s0" ]
	view > $D/v1
	diff $D/v0 $D/v1
	case %[1]s in begin-journal|begin-layer|restack-down|begin-restacked|before-pm|pm|commit-stack)
		grep -q "was interrupted; the card is as before it" $D/msg ;;
	esac
fi
`, c.step, f, i%2, c.committed)
	}
	b.WriteString(`
# squash interrupted at each step
for s in squash-copy squash-stack squash-cleanup; do
	t $R/etc/sq-$s X
	view > $D/v0
	if OVPKG_TEST_CRASH_AT=$s ovpkg commit $O; then echo "crash point $s not reached"; exit 1; fi
	ovmount $O >/dev/null
	ovpkg history $O
	consistent
	view > $D/v1
	diff $D/v0 $D/v1
done
# rollback interrupted before and after its commit point
t $R/etc/rb1 X
view > $D/v0
if OVPKG_TEST_CRASH_AT=restack-down ovpkg rollback $O; then echo "crash point not reached"; exit 1; fi
ovmount $O > $D/msg 2>&1
ovpkg history $O | tee -a $D/msg
cat $D/msg
grep -q "nothing was rolled back" $D/msg
consistent
view > $D/v1
diff $D/v0 $D/v1
if OVPKG_TEST_CRASH_AT=rollback-switched ovpkg rollback $O; then echo "crash point not reached"; exit 1; fi
ovmount $O > $D/msg 2>&1
ovpkg history $O | tee -a $D/msg
cat $D/msg
grep -q "was interrupted after it took effect" $D/msg
consistent
[ ! -e $R/etc/rb1 ]
# flatten interrupted: no image left, source untouched
view > $D/v0
# (its mount point in a TMPDIR of the test's: a killed flatten cannot remove it)
mkdir -p $D/crashtmp
if TMPDIR=$D/crashtmp OVPKG_TEST_CRASH_AT=flatten-copy ovpkg flatten $O --to $D/new.img; then echo "flatten crash not reached"; exit 1; fi
[ ! -e $D/new.img ]
view > $D/v1
diff $D/v0 $D/v1
consistent
ovpkg flatten $O -q --to $D/new.img
[ -e $D/new.img ] && [ ! -e $D/.new.img.ovpkg-flatten ]
ovpkg eject $O >/dev/null
checkClean
`)
	r := mustRun(t, b.String())
	want(t, r, "CLEAN")
}

func TestE2EENOSPCDuringCommit(t *testing.T) {
	r := run(t, 8, `
ovmount $O >/dev/null
for i in 1 2 3; do
	ovpkg __txn-test $O $R/usr/lib/l$i/a/b/c/file X
	mkdir -p $R/usr/lib/l$i/dirs && for j in $(seq 1 40); do mkdir -p $R/usr/lib/l$i/dirs/d$j; done
done
# fill the card to the last block and inode
dd if=/dev/zero of=$R/var/fill bs=64k 2>/dev/null || true
i=0; while mkdir $R/var/i$i 2>/dev/null; do i=$((i+1)); done
sync
view > $D/v0
s0=$(stack)
if ovpkg commit $O 2> $D/err; then echo "commit on a full card succeeded"; cat $D/err; exit 1; fi
cat $D/err
grep -q "card is full" $D/err
[ "$(stack)" = "$s0" ]
consistent
view > $D/v1
diff $D/v0 $D/v1
# free space: the commit works
rm $R/var/fill; rmdir $R/var/i*
ovpkg commit $O
consistent
[ -e $R/usr/lib/l2/a/b/c/file ]
ovpkg eject $O >/dev/null
checkClean
`)
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	want(t, r, "CLEAN")
}

func TestE2E200InstallsAndRollbacks(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	r := mustRun(t, `
ovmount $O >/dev/null
for i in $(seq 1 200); do
	t $R/usr/bin/p$i $i 2>/dev/null
	[ -e $R/usr/bin/p$i ]
	ovpkg rollback $O >/dev/null
	[ ! -e $R/usr/bin/p$i ]
done
[ "$(stack)" = "0001 " ]
consistent
# and 40 kept installs: the automatic squash bounds the layers
for i in $(seq 1 40); do t $R/usr/bin/k$i $i 2>/dev/null; done
n=$(wc -w < $D/card/ovpkg/stack)
echo "layers after 40 installs: $n"
[ "$n" -le 16 ]
for i in $(seq 1 40); do [ "$(cat $R/usr/bin/k$i)" = $i ]; done
consistent
ovpkg history $O --json | grep -c '"event": "txn"'
ovpkg eject $O >/dev/null
checkClean
`)
	want(t, r, "CLEAN")
}

func TestE2EFlattenMountsEqual(t *testing.T) {
	nstest.Need(t, "python3", "sfdisk", "blkid", "e2fsck")
	r := mustRun(t, `
ovmount $O >/dev/null
t $R/usr/bin/a A
t $R/etc/conf "k=v"
rm $R/usr/bin/tool
rm -rf $R/usr/share/doc/base && mkdir $R/usr/share/doc/base && echo new > $R/usr/share/doc/base/NEW
ln -s a $R/usr/bin/link
t $R/var/lib/x/y Z
view > $D/src
# refusals
touch $D/exists.img
if ovpkg flatten $O --to $D/exists.img; then echo "overwrote a file"; exit 1; fi
if ovpkg flatten $O --to $D/card.img; then echo "flattened onto the card image"; exit 1; fi
if ovpkg flatten $O --to $R/var/new.img; then echo "flattened onto the card via the overlay"; exit 1; fi
[ ! -e $R/var/new.img ]
ovpkg flatten $O --to $D/new.img 2> $D/progress
grep -q "flatten: .* files" $D/progress
off=$(sfdisk -J $D/new.img | python3 -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; print(t["partitions"][0]["start"]*512)')
e2fsck -fn "$D/new.img?offset=$off" >/dev/null
ovpkg eject $O >/dev/null
uuid=$(blkid -p -o value -s UUID -O $off $D/new.img)
sed -i "s|^SD_ROOTFS=.*|SD_ROOTFS=$D/new.img|; s|^SD_UUID=.*|SD_UUID=$uuid|" $OVPKG_CONFIG
ovmount $O >/dev/null
cat $D/card/ovpkg/stack
view > $D/dst
diff $D/src $D/dst
ovpkg eject $O >/dev/null
# --base: a plain root tree equal to the merged view
sed -i "s|^SD_ROOTFS=.*|SD_ROOTFS=$D/card.img|" $OVPKG_CONFIG
sed -i "/^SD_UUID=/d" $OVPKG_CONFIG
ovmount $O --trust >/dev/null
ovpkg flatten $O -q --base --to $D/root.img
# refused where the root copy would take the image being written with it
mkdir -p $R/srv
for to in $R/srv/root.img $R/root.img; do
	if ovpkg flatten $O -q --base --to $to 2> $D/err; then echo "flatten --base copied $to into itself"; exit 1; fi
	grep -q "which flatten --base copies into the new image" $D/err
	[ ! -e $to ]
	[ ! -e $(dirname $to)/.$(basename $to).ovpkg-flatten ]
done
ovpkg eject $O >/dev/null
off=$(sfdisk -J $D/root.img | python3 -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; print(t["partitions"][0]["start"]*512)')
mkdir $D/rootimg && mount -o ro,loop,offset=$off $D/root.img $D/rootimg
(cd $D/rootimg && find usr etc var -printf '%p %y %m %U:%G %l\n' | sort; cat $(find usr etc var -type f | sort) | md5sum) > $D/rootview
umount $D/rootimg
diff $D/src $D/rootview
checkClean
`)
	want(t, r, "CLEAN")
}

func TestE2EDedupe(t *testing.T) {
	nstest.Need(t, "python3")
	r := mustRun(t, `
if ovpkg dedupe $O 2> $D/err; then echo "dedupe without a card worked"; exit 1; fi
cat $D/err
ovmount $O >/dev/null
# copies of base files on the card (same content, mode, owner)
t $R/usr/bin/new N
head -c 200000 /dev/urandom > $D/base/usr/bin/big
ovpkg eject $O >/dev/null; ovmount $O >/dev/null
cp -p $R/usr/bin/big $R/usr/bin/big.tmp && mv $R/usr/bin/big.tmp $R/usr/bin/big
cp -p $R/usr/share/doc/base/README $R/usr/share/doc/base/R.tmp && mv $R/usr/share/doc/base/R.tmp $R/usr/share/doc/base/README
[ -e $D/card/ovpkg/layers/0003/tree/usr/bin/big ]
chmod 600 $R/usr/bin/tool
view > $D/v0
ovpkg dedupe $O --json > $D/d.json
cat $D/d.json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["files"]==2 and d["bytes_freed"]>=200000, d' $D/d.json
view > $D/v1
diff $D/v0 $D/v1
[ ! -e $D/card/ovpkg/layers/0003/tree/usr/bin/big ] && [ ! -e $D/card/ovpkg/layers/0003/tree/usr/share ]
[ -e $D/card/ovpkg/layers/0003/tree/usr/bin/tool ] && [ -e $D/card/ovpkg/layers/0002/tree/usr/bin/new ]
consistent
ovpkg eject $O >/dev/null
checkClean
`)
	want(t, r, "CLEAN", "run ovmount first")
}

func TestE2EDriftAndRebase(t *testing.T) {
	r := mustRun(t, `
ovmount $O >/dev/null
# the card copies passwd and the status database in a transaction
t $R/etc/marker M
echo 'games:x:5:60::/usr/games:/usr/sbin/nologin' >> $R/etc/passwd
printf 'Package: supertux\nStatus: install ok installed\nVersion: 0.6\n\n' >> $R/var/lib/dpkg/status
t $R/etc/marker2 M
ovpkg rebase --check $O | tee $D/check
grep -q "has not changed" $D/check
# the base changes underneath
echo '_apt:x:42:65534::/nonexistent:/usr/sbin/nologin' >> $D/base/etc/passwd
printf 'Package: adduser\nStatus: install ok installed\nVersion: 3\n\n' >> $D/base/var/lib/dpkg/status
ovpkg rebase --check $O | tee $D/check
grep -q "/etc/passwd changed in the base" $D/check
grep -q "/var/lib/dpkg/status changed in the base" $D/check
ovpkg rebase $O
grep -q '^games:' $R/etc/passwd && grep -q '^_apt:' $R/etc/passwd && grep -q '^root:' $R/etc/passwd
grep -q 'Package: supertux' $R/var/lib/dpkg/status && grep -q 'Package: adduser' $R/var/lib/dpkg/status
ovpkg rebase --check $O | grep "has not changed" >/dev/null
ovpkg history $O | grep rebase >/dev/null
# a conflict: both sides change root's entry -> refused, nothing changed
sed -i 's|^root:x:0:0::/root:/bin/sh|root:x:0:0::/root:/bin/zsh|' $R/etc/passwd
t $R/etc/marker3 M
sed -i 's|^root:x:0:0::/root:/bin/sh|root:x:0:0::/root:/bin/dash|' $D/base/etc/passwd
cp $R/etc/passwd $D/p0
s0=$(stack)
if ovpkg rebase $O 2> $D/err; then echo "conflicting rebase succeeded"; exit 1; fi
cat $D/err
grep -q "conflict" $D/err && grep -q "root" $D/err
cmp $D/p0 $R/etc/passwd
[ "$(stack)" = "$s0" ]
consistent
ovpkg eject $O >/dev/null
checkClean
`)
	want(t, r, "CLEAN")
}

// Processes started from the card hold the overlays: a transaction still
// gets its own layer (the held overlays are detached and the new stack is
// mounted in their place), says so naming the processes; a failed one is
// undone; rollback works; no upper of a held (lingering) overlay becomes
// the upper of a new mount; eject refuses naming them until they exit and
// then leaves nothing behind; ovmount again shows the same state.
func TestE2EBusyOverlays(t *testing.T) {
	r := mustRun(t, `
# status wants a package manager in the root
printf '#!/bin/sh\nexit 0\n' > $R/usr/bin/dpkg; chmod +x $R/usr/bin/dpkg
ovmount $O >/dev/null
t $R/usr/bin/a A
cp /bin/sleep $R/usr/bin/sleepy
`+heldHelpers+`
hold; p1=${pids# }
t $R/usr/bin/b B > $D/out 2>&1 || { cat $D/out; exit 1; }
cat $D/out
grep -q "old overlay of $R/usr stays in use by PID $p1 (sleepy) until it exits" $D/out
! grep -q "cannot give" $D/out
[ "$(cat $R/usr/bin/b)" = B ] && [ "$(cat $R/usr/bin/a)" = A ]
ovpkg history $O > $D/h; cat $D/h
grep " b " $D/h | grep live >/dev/null
! grep -q "no own layer" $D/h
grep -q "lingering: .*PID $p1 (sleepy)" $D/h
ovpkg history --json $O | grep '"lingering"' >/dev/null
ovpkg status $O > $D/st || { cat $D/st; exit 1; }
cat $D/st
grep -q "lingering: .*PID $p1 (sleepy)" $D/st
grep -q '"detached"' /run/ovpkg/mounts.json
consistentHeld; uppersOK
# a failed transaction while held: undone, the view as before
hold
v0=$(view)
if t --fail $R/usr/bin/f F > $D/out 2>&1; then cat $D/out; echo "the failing transaction succeeded"; exit 1; fi
cat $D/out
grep -q "undone" $D/out
[ ! -e $R/usr/bin/f ] && [ "$(view)" = "$v0" ]
consistentHeld; uppersOK
# rollback while held, also by a process that only has a file open
hold
bash -c "exec 3<$R/usr/bin/a; exec sleep 1000" & pf=$!; pids="$pids $pf"; sleep 0.2
ovpkg rollback $O > $D/out 2>&1 || { cat $D/out; exit 1; }
cat $D/out
[ ! -e $R/usr/bin/b ] && [ -e $R/usr/bin/a ] && [ -e $R/usr/bin/sleepy ]
consistentHeld; uppersOK
# uovmount leaves the card mounted and names the lingering overlays
uovmount $O > $D/out 2>&1 || { cat $D/out; exit 1; }
cat $D/out
grep -q "stays in use by PID $p1" $D/out
ovmount $O >/dev/null
consistentHeld; uppersOK
# eject refuses, naming the holders, and leaves everything mounted
if ovpkg eject $O > $D/out 2>&1; then echo "eject while held worked"; exit 1; fi
cat $D/out
for p in $pids; do [ $p = $pf ] || grep "PID $p (sleepy): exe $R/usr/bin/sleepy" >/dev/null $D/out; done
grep -q "old overlay of $R/usr (detached by a restack" $D/out
grep -q "PID $pf (sleep): fd 3 $R/usr/bin/a" $D/out
consistentHeld
echo STEP-kill
kill $pids; for p in $pids; do wait $p 2>/dev/null || true; done
ovpkg history $O | grep lingering && { echo "still lingering after kill"; exit 1; }
echo STEP-c
# the layers kept for the old overlays go at the next command
t $R/usr/bin/c C
held=""; consistent
echo STEP-card
# an ovpkg binary living on the card (through /usr/bin) can still restack:
# it re-executes itself from memory first
cp "$(command -v ovpkg)" $R/usr/bin/ovpkg-card
$R/usr/bin/ovpkg-card rollback $O
[ ! -e $R/usr/bin/c ] && [ -e $R/usr/bin/ovpkg-card ]
$R/usr/bin/ovpkg-card __txn-test $O $R/usr/bin/d D
[ -e $R/usr/bin/d ]
consistent
v1=$(view)
ovpkg eject $O >/dev/null
ovmount $O >/dev/null
[ "$(view)" = "$v1" ] && [ -e $R/usr/bin/a ] && [ ! -e $R/usr/bin/b ]
consistent
ovpkg eject $O >/dev/null
checkClean
`)
	want(t, r, "CLEAN")
}

// heldHelpers are shell functions of the busy tests: hold starts a
// process from the card (its overlay's upper layer is then "held"),
// uppersOK checks no held upper is the upper of a mounted overlay,
// consistentHeld is consistent allowing the layer directories kept for
// lingering old overlays.
const heldHelpers = `held=""; pids=""
trap 'kill $pids 2>/dev/null || true' EXIT
hold() { $R/usr/bin/sleepy 1000 >/dev/null 2>&1 </dev/null & pids="$pids $!"; held="$held $(tail -n1 $D/card/ovpkg/stack)"; sleep 0.2; }
# no new overlay may have a held overlay's upper as its upper
uppersOK() {
	local l
	for l in $held; do
		if awk -v r="$R/" 'index($5, r) == 1' /proc/self/mountinfo | grep "upperdir=$D/card/ovpkg/layers/$l/" >/dev/null; then
			echo "HELD UPPER $l REUSED" >&2; awk -v r="$R/" 'index($5, r) == 1' /proc/self/mountinfo >&2; return 1
		fi
	done
}
# consistent, except for layer directories kept while an old overlay
# that has them as upper lingers
consistentHeld() {
	local s l top x
	s=$(sort $D/card/ovpkg/stack | tr '\n' ' ')
	l=""; for x in $(ls $D/card/ovpkg/layers); do case " $held " in *" $x "*) grep -qx $x $D/card/ovpkg/stack && l="$l$x ";; *) l="$l$x ";; esac; done
	[ "$s" = "$l" ] || { echo "INCONSISTENT: stack [$s] dirs [$l] held [$held]" >&2; return 1; }
	top=$(tail -n1 $D/card/ovpkg/stack)
	for d in usr etc var; do
		grep -q " $R/$d .*upperdir=$D/card/ovpkg/layers/$top/tree/$d," /proc/self/mountinfo ||
			{ echo "INCONSISTENT: overlay on $R/$d does not have layer $top as upper" >&2; return 1; }
	done
	[ ! -e $D/card/ovpkg/txn ] || { echo "INCONSISTENT: journal left" >&2; return 1; }
}
`

// A new mount fails in the middle of a restack that detaches held
// overlays (OVPKG_TEST_FAIL_AT=detach-mount-2, after the old overlay there
// was taken off): every directory gets a working overlay over the previous
// layers again, with a fresh upper; nothing of the transaction stays.
func TestE2EBusyRestackMountFails(t *testing.T) {
	r := mustRun(t, `
ovmount $O >/dev/null
t $R/usr/bin/a A
cp /bin/sleep $R/usr/bin/sleepy
`+heldHelpers+`
hold
(cd $R/etc && exec sleep 1000) >/dev/null 2>&1 </dev/null & pids="$pids $!"; sleep 0.2
v0=$(view); s0=$(stack)
if OVPKG_TEST_FAIL_AT=detach-mount-2 t $R/usr/bin/b B > $D/out 2>&1; then cat $D/out; echo "the transaction worked"; exit 1; fi
cat $D/out
grep -q "mount (test)" $D/out
grep -q "the previous layers are mounted again" $D/out
[ ! -e $R/usr/bin/b ] && [ "$(view)" = "$v0" ]
[ "$(stack)" != "$s0" ] && case "$(stack)" in "$s0"*) ;; *) echo "stack $(stack) is not $s0 plus a layer"; exit 1;; esac
consistentHeld; uppersOK
grep -c '"target"' /run/ovpkg/mounts.json
kill $pids; for p in $pids; do wait $p 2>/dev/null || true; done
t $R/usr/bin/b B
[ -e $R/usr/bin/b ]
held=""; consistent
ovpkg eject $O >/dev/null
checkClean
`)
	t.Log(r.Stdout)
	want(t, r, "CLEAN")
}

// Real dpkg inside transactions: install, drift of the base's status
// (dpkg installs into the base under the mounted card), rebase keeps
// both packages, rollbacks undo rebase and install.
func TestE2EDpkgTransactionsAndRebase(t *testing.T) {
	nstest.Need(t, "dpkg-deb", "dpkg", "dpkg-query")
	r := mustRun(t, `
mk() { # NAME: a tiny package with one program and one conffile
	local p=$D/pkg/$1
	mkdir -p $p/DEBIAN $p/usr/bin $p/etc/$1
	printf 'Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test %s\n' $1 $1 > $p/DEBIAN/control
	echo /etc/$1/conf > $p/DEBIAN/conffiles
	printf '#!/bin/sh\necho %s\n' $1 > $p/usr/bin/$1; chmod 755 $p/usr/bin/$1
	echo "setting=1" > $p/etc/$1/conf
	dpkg-deb -Zgzip --root-owner-group -b $p $D/$1.deb >/dev/null
}
mk cardpkg; mk basepkg
mkdir -p $R/var/lib/dpkg/info $R/var/lib/dpkg/updates $R/var/lib/dpkg/triggers
touch $R/var/lib/dpkg/available
ovmount $O >/dev/null
DP="dpkg --root=$R --force-not-root --force-script-chrootless --log=/dev/null"
ovpkg __txn-test $O --exec "$DP -i $D/cardpkg.deb" cardpkg
dpkg-query --admindir=$R/var/lib/dpkg -W cardpkg
[ -x $R/usr/bin/cardpkg ] && [ ! -e $D/base/usr/bin/cardpkg ]
ovpkg history $O | grep "test-exec *cardpkg" >/dev/null
# the base gets a package of its own under the mounted card
dpkg --root=$D/base --force-not-root --force-script-chrootless --log=/dev/null -i $D/basepkg.deb >/dev/null
ovpkg rebase --check $O | grep "/var/lib/dpkg/status changed in the base" >/dev/null
# through the overlay the card's status hides basepkg
! dpkg-query --admindir=$R/var/lib/dpkg -W basepkg 2>/dev/null
ovpkg rebase $O
dpkg-query --admindir=$R/var/lib/dpkg -W cardpkg basepkg
dpkg-query --admindir=$R/var/lib/dpkg -W -f '${Status}\n' basepkg | grep "install ok installed" >/dev/null
[ -x $R/usr/bin/basepkg ]
ovpkg rebase --check $O | grep "has not changed" >/dev/null
# undo the rebase, then the install
ovpkg rollback $O
! dpkg-query --admindir=$R/var/lib/dpkg -W basepkg 2>/dev/null
ovpkg rollback $O
! dpkg-query --admindir=$R/var/lib/dpkg -W cardpkg 2>/dev/null
[ ! -e $R/usr/bin/cardpkg ]
consistent
ovpkg eject $O >/dev/null
checkClean
`)
	want(t, r, "CLEAN")
}

// Over the real root (inside the namespace; /usr, /etc and /var): a
// transaction under /usr/local, its rollback, a commit; the host's /usr
// never sees any of it.
func TestE2ERealRoot(t *testing.T) {
	r := mustRun(t, `
F=/usr/local/ovpkg-txn-e2e-$$
[ ! -e $F ]
ovmount >/dev/null
grep -q " /usr .* - overlay ovpkg " /proc/self/mountinfo
ovpkg __txn-test $F one
grep -q " /usr .* - overlay ovpkg .*upperdir=$D/card/ovpkg/layers/0003/tree/usr," /proc/self/mountinfo
[ "$(cat $F)" = one ]
ovpkg __txn-test $F.2 two
ovpkg history | grep -c test-install
ovpkg rollback
[ -e $F ] && [ ! -e $F.2 ]
ovpkg commit
[ "$(cat $F)" = one ]
ovpkg eject >/dev/null
[ ! -e $F ]
umount $D/base
echo CLEAN
`)
	want(t, r, "CLEAN")
}

// The device case over the real root: a `sleep` started after ovmount runs
// /usr/bin/sleep and libc through the overlay. An install still gets its
// own layer (the message names the sleep), rollback works while it runs,
// eject refuses naming it and works once it is gone.
func TestE2ERealRootHeldBySleep(t *testing.T) {
	r := mustRun(t, `
F=/usr/local/ovpkg-held-e2e-$$
[ ! -e $F ]
ovmount >/dev/null
sleep 1000 >/dev/null 2>&1 </dev/null & p=$!
trap 'kill $p 2>/dev/null || true' EXIT
sleep 0.3
[ "$(readlink /proc/$p/exe)" = /usr/bin/sleep ]
ovpkg __txn-test $F one > $D/out 2>&1 || { cat $D/out; exit 1; }
cat $D/out
grep -q "the old overlay of /usr stays in use by PID $p (sleep) until it exits" $D/out
! grep -q "cannot give" $D/out
[ "$(cat $F)" = one ]
ovpkg history > $D/h; cat $D/h
grep test-install $D/h | grep live >/dev/null
grep -q "lingering: .*PID $p (sleep)" $D/h
ovpkg rollback
[ ! -e $F ]
if ovpkg eject > $D/out 2>&1; then echo "eject while held worked"; exit 1; fi
cat $D/out
grep -q "PID $p (sleep)" $D/out
grep -q " /usr .* - overlay ovpkg " /proc/self/mountinfo
kill $p; wait $p 2>/dev/null || true
ovpkg eject >/dev/null
[ ! -e $F ]
umount $D/base
echo CLEAN
`)
	t.Log(r.Stdout)
	want(t, r, "CLEAN")
}

// A transaction killed in the middle of a restack that detaches held
// overlays (one directory already on the new stack, the others still on
// the old one; the mount record already names the new stack), and at the
// other steps while overlays are held: the next ovmount finds a
// consistent card, the transaction's file is not visible, no held upper
// is reused, and once the holders are gone eject leaves nothing.
func TestE2EBusyCrashDuringRestack(t *testing.T) {
	var b strings.Builder
	b.WriteString(`
ovmount $O >/dev/null
t $R/usr/bin/a A
cp /bin/sleep $R/usr/bin/sleepy
` + heldHelpers)
	for i, step := range []string{"detach-first", "begin-restacked", "pm", "commit-stack", "commit-history"} {
		committed := step == "commit-history" // the stack file is written between these two
		fmt.Fprintf(&b, `
echo "== %[1]s"
hold
v0=$(view)
if OVPKG_TEST_CRASH_AT=%[1]s ovpkg __txn-test $O $R/usr/bin/x%[2]d X > $D/out 2>&1; then cat $D/out; echo "crash point %[1]s not reached"; exit 1; fi
ovmount $O > $D/msg 2>&1 || { cat $D/out $D/msg; grep overlay /proc/self/mountinfo; exit 1; }
cat $D/msg
if [ %[3]v = true ]; then
	[ -e $R/usr/bin/x%[2]d ] || { echo "%[1]s: committed transaction lost"; exit 1; }
else
	[ ! -e $R/usr/bin/x%[2]d ] || { echo "%[1]s: interrupted transaction visible"; exit 1; }
	[ "$(view)" = "$v0" ] || { echo "%[1]s: view changed"; exit 1; }
	grep -q "was interrupted" $D/msg
fi
consistentHeld; uppersOK
`, step, i, committed)
	}
	b.WriteString(`
kill $pids; for p in $pids; do wait $p 2>/dev/null || true; done; pids=""; held=""
t $R/usr/bin/z Z
consistent
ovpkg eject $O >/dev/null
checkClean
`)
	r := mustRun(t, b.String())
	want(t, r, "CLEAN")
}

// A flatten that fails after its new image is mounted undoes every step,
// newest first: unmounted, the loop device released (through
// Device.Detach), the mount point and the half-written image removed;
// the card is untouched.
func TestE2EFlattenFailureUndone(t *testing.T) {
	r := mustRun(t, `
ovmount $O >/dev/null
t $R/usr/bin/a A
view > $D/v0
set +e
mkdir $D/ftmp
TMPDIR=$D/ftmp OVPKG_TEST_FAIL_AT=flatten-copy ovpkg flatten $O --to $D/new.img; echo "exit $?"
set -e
[ ! -e $D/new.img ] && [ ! -e $D/.new.img.ovpkg-flatten ] && echo NO-IMAGE
[ -z "$(losetup -j $D/.new.img.ovpkg-flatten 2>/dev/null)" ] && echo NO-LOOP
ls $D/ftmp | grep . && echo "MOUNT POINT LEFT" || true
grep -q ovpkg-flatten /proc/self/mountinfo && echo "MOUNT LEFT" || true
view > $D/v1
diff $D/v0 $D/v1 && echo CARD-SAME
consistent
ovpkg eject $O >/dev/null
checkClean
`)
	want(t, r, "exit 1", "writing the new image: input/output error", "NO-IMAGE", "NO-LOOP", "CARD-SAME", "CLEAN")
	if strings.Contains(r.Stdout, "LEFT") {
		t.Errorf("flatten left something behind:\n%s", r)
	}
}
