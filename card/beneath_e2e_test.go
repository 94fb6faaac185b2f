package card_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// Hostile cards (issue 9, Why 1, 2 and 3): a card whose UUID still
// matches, edited while it was not mounted (by mounting the image in the
// test's namespace, or with debugfs), so that a path below its root leads
// off it. Each runs the product binary in a private mount namespace with
// scratch victims outside the card (files, a directory with NAME/tree
// inside) asserted byte-identical afterwards; the command must refuse
// with a one-line error and leave nothing mounted or attached.

func scratch(dir string) string {
	return fmt.Sprintf(`
D=%s
mount -t tmpfs -o size=256m,mode=0755 scratch "$D"
export OVPKG_CONFIG=$D/ovpkg.conf
mkoverlay 32 "$D/card.img" >/dev/null
echo "MOUNTPOINT=$D/card" >> "$OVPKG_CONFIG"
echo "OVERLAY_DIRS=usr etc" >> "$OVPKG_CONFIG"
R=$D/root
mkdir -p $R/usr/local/bin $R/usr/bin $R/etc $R/var/lib $R/proc $R/tmp
echo base > $R/usr/bin/tool
echo 'root:x:0:0::/root:/bin/sh' > $R/etc/passwd
# victims outside the card
mkdir -p $D/victim/host/precious-data/tree/usr $D/victim/host/0001/tree/usr $D/victim/host/0001/work $D/victim/dir
echo precious > $D/victim/host/precious-data/tree/usr/file
echo precious > $D/victim/file
echo 'root:$6$hash:19000:0:99999:7:::' > $D/victim/shadow; chmod 600 $D/victim/shadow
echo 0001 > $D/victim/stack
echo keep > $D/victim/dir/keep
vsum() { (cd $D/victim && find . -printf '%%p %%m %%u %%g %%s %%y\n' | sort; find . -type f -exec cat {} +) | md5sum; }
V0=$(vsum)
vcheck() { [ "$(vsum)" = "$V0" ] && echo VICTIMS-INTACT || { echo "VICTIMS CHANGED"; (cd $D/victim && find . -ls); exit 1; }; }
checkClean() {
	local l m
	l=$(losetup -j "$D/card.img" || true)
	m=$(awk -v d="$D/" 'index($5, d) == 1' /proc/self/mountinfo)
	if [ -n "$l$m" ]; then echo "LEAK: loop [$l] mounts [$m]"; return 1; fi
	if [ -e /run/ovpkg/mounts.json ]; then echo "LEAK: record left"; return 1; fi
	echo CLEAN
}
# edit runs its arguments in $D/edit with the card's filesystem mounted
# there (not through ovpkg: the card edited "elsewhere").
edit() { mkdir -p $D/edit; mount -o loop,offset=1048576 $D/card.img $D/edit; (cd $D/edit && eval "$1"); umount $D/edit; }
dbg() { debugfs -w -R "$1" "$D/card.img?offset=1048576" >/dev/null 2>&1; }
# refuses VERB...: the command fails with exactly one line on stderr.
refuses() {
	set +e
	"$@" > $D/out 2> $D/err
	local code=$?
	set -e
	echo "EXIT $code"
	echo "STDERR-LINES $(wc -l < $D/err)"
	echo "ERR: $(cat $D/err)"
}
# a card with the layout, made by ovpkg
ovmount --root $R >/dev/null
echo mine > $R/usr/local/mine
eject --root $R >/dev/null
`, dir)
}

func run(t *testing.T, script string) nstest.Result {
	t.Helper()
	nstest.Need(t, "debugfs", "losetup")
	dir := nstest.TempDir(t)
	r := nstest.Run(t, scratch(dir)+script)
	if r.Code != 0 {
		t.Fatalf("script failed: %s", r)
	}
	return r
}

// refused checks the output of `refuses`: a non-zero exit, one line on
// stderr naming want, victims intact, nothing left.
func refused(t *testing.T, r nstest.Result, want ...string) {
	t.Helper()
	out := r.Stdout
	if strings.Contains(out, "EXIT 0\n") {
		t.Errorf("not refused:\n%s", r)
	}
	if !strings.Contains(out, "STDERR-LINES 1\n") {
		t.Errorf("the error is not one line:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("error lacks %q:\n%s", w, r)
		}
	}
	for _, w := range []string{"VICTIMS-INTACT", "CLEAN"} {
		if !strings.Contains(out, w) {
			t.Errorf("no %s:\n%s", w, r)
		}
	}
}

func TestE2EHostileCard(t *testing.T) {
	for _, c := range []struct {
		name, craft, cmd string
		want             []string
	}{
		// Why 1: recovery used to delete every directory there the stack
		// does not list ("removed leftover layer precious-data").
		{"layers is a symlink made with debugfs",
			`edit 'mv ovpkg/layers ovpkg/layers.real'; dbg "symlink ovpkg/layers $D/victim/host"`,
			`ovmount --root $R`, []string{"ovpkg/layers: is or goes through a symbolic link", "nothing done"}},
		{"ovpkg dir is a symlink",
			`edit "mv ovpkg ovpkg.real; ln -s $D/victim/host ovpkg"`,
			`ovmount --root $R`, []string{"card/ovpkg: is or goes through a symbolic link"}},
		// Why 2: package writes would land on the host, MkdirAll would
		// create host directories, the kernel would empty <work>/work.
		{"tree and work are symlinks",
			`edit "cd ovpkg/layers/0001 && mv tree tree.real && mv work work.real && ln -s $D/victim/host/0001/tree tree && ln -s $D/victim/host/0001/work work"`,
			`ovmount --root $R`, []string{"layers/0001/tree: is or goes through a symbolic link"}},
		{"upper is a symlink",
			`edit "cd ovpkg/layers/0001/tree && mv usr usr.real && ln -s $D/victim/dir usr"`,
			`ovmount --root $R`, []string{"layers/0001/tree/usr: is or goes through a symbolic link"}},
		{"workdir is a symlink",
			`edit "cd ovpkg/layers/0001/work && mv etc etc.real && ln -s $D/victim/dir etc"`,
			`ovmount --root $R`, []string{"layers/0001/work/etc: is or goes through a symbolic link"}},
		{"stack is a symlink",
			`edit "rm ovpkg/stack && ln -s $D/victim/stack ovpkg/stack"`,
			`ovmount --root $R`, []string{"ovpkg/stack: is or goes through a symbolic link"}},
		{"FORMAT is a symlink",
			`edit "mv ovpkg/FORMAT $D/victim/../FORMAT.x && ln -s $D/FORMAT.x ovpkg/FORMAT"`,
			`ovmount --root $R`, []string{"ovpkg/FORMAT: is or goes through a symbolic link"}},
		{"stack names a path",
			`edit "printf '0001\n../../../victim/host/0001\n' > ovpkg/stack"`,
			`ovmount --root $R`, []string{"ovpkg/stack: bad or repeated layer id"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, c.craft+`
refuses `+c.cmd+`
vcheck
checkClean
`)
			refused(t, r, c.want...)
		})
	}
}

// The journal is read after the card is mounted (ovmount warns and
// mounts; the transaction verbs refuse until it is fixed).
func TestE2EHostileJournal(t *testing.T) {
	for _, c := range []struct{ name, craft, want string }{
		{"symlink", `edit "ln -s $D/victim/file ovpkg/txn"`, "ovpkg/txn: open: a symbolic link on the way"},
		{"names another directory", `edit "printf 'squash ../../../victim/host commit 2026-01-02T03:04:05Z ../../../victim/dir\n' > ovpkg/txn"`, "ovpkg/txn: bad layer id"},
		{"squash of paths", `edit "printf 'squash 0002 commit 2026-01-02T03:04:05Z ../../../victim/dir\n' > ovpkg/txn"`, "ovpkg/txn: bad argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, c.craft+`
ovmount --root $R > $D/mount.out 2>&1
grep -q "^ovmount: warning: .*`+c.want+`" $D/mount.out && echo MOUNT-WARNED
refuses ovpkg rollback --root $R
vcheck
eject --root $R >/dev/null
checkClean
`)
			refused(t, r, c.want)
			if !strings.Contains(r.Stdout, "MOUNT-WARNED") {
				t.Errorf("ovmount did not warn:\n%s", r)
			}
		})
	}
}

// A history file that is a symlink: ovmount works (it does not read the
// history), the verbs that read or append to it refuse.
func TestE2EHostileHistory(t *testing.T) {
	r := run(t, `
edit "ln -s $D/victim/file ovpkg/history"
ovmount --root $R >/dev/null
refuses ovpkg history --root $R
vcheck
# a transaction: its layer is dropped or kept, but nothing is appended to the victim
set +e; ovpkg __txn-test --root $R $R/usr/local/new new >/dev/null 2>&1; set -e
vcheck
eject --root $R >/dev/null
checkClean
`)
	refused(t, r, "ovpkg/history: open: a symbolic link on the way")
}

// Why 3: base/sums with ../ and absolute paths: rebase used to rewrite an
// arbitrary host file 0644 root:root and copy another onto the card.
func TestE2EHostileSums(t *testing.T) {
	for _, c := range []struct{ name, line string }{
		{"dotdot", "../victim/shadow"},
		{"inside then out", "usr/../../victim/shadow"},
		{"absolute", "/" + "victim/shadow"},
		{"outside the overlaid dirs", "var/lib/x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, `
edit "mkdir -p ovpkg/base/files; printf '%s %s\n' $(printf x | sha256sum | cut -c1-64) '`+c.line+`' > ovpkg/base/sums; cp $D/victim/file ovpkg/base/files/x"
ovmount --root $R >/dev/null
refuses ovpkg rebase --root $R
cp $D/err $D/err1
refuses ovpkg rebase --check --root $R
echo "FIRST: $(cat $D/err1)"
vcheck
eject --root $R >/dev/null
checkClean
`)
			refused(t, r, "ovpkg/base/sums: line 1: path")
		})
	}
}

// A card whose etc/passwd is a symlink to a host file: rebase must not
// merge through it (reading shadow into passwd) nor write through it.
func TestE2ERebaseThroughCardSymlink(t *testing.T) {
	r := run(t, `
edit "mkdir -p ovpkg/base/files/etc; echo 'root:x:0:0::/root:/bin/sh' > ovpkg/base/files/etc/passwd; printf '%s etc/passwd\n' \$(sha256sum < ovpkg/base/files/etc/passwd | cut -c1-64) > ovpkg/base/sums; ln -s $D/victim/shadow ovpkg/layers/0001/tree/etc/passwd"
echo 'daemon:x:1:1::/:/bin/sh' >> $R/etc/passwd   # the base drifts
ovmount --root $R >/dev/null
refuses ovpkg rebase --root $R
vcheck
eject --root $R >/dev/null
checkClean
`)
	refused(t, r, "a symbolic link on the way")
}

// Nothing is deleted that ovpkg cannot show it created: a directory in
// ovpkg/layers without ovpkg's mark is kept (and said so); a marked
// leftover is removed; a layer directory that is a mount point is never
// entered.
func TestE2ELeftoversNeedTheMark(t *testing.T) {
	r := run(t, `
edit "mkdir -p ovpkg/layers/precious-data/tree/usr && echo mine > ovpkg/layers/precious-data/tree/usr/file
      mkdir -p ovpkg/layers/0007/tree && printf 'ovpkg-layer 0007\n' > ovpkg/layers/0007/ovpkg-layer
      mkdir ovpkg/layers/0008"
ovmount --root $R > $D/out1 2>&1
cat $D/out1
[ -f $D/card/ovpkg/layers/precious-data/tree/usr/file ] && echo UNMARKED-KEPT
[ ! -e $D/card/ovpkg/layers/0007 ] && echo MARKED-REMOVED
[ ! -e $D/card/ovpkg/layers/0008 ] && echo EMPTY-REMOVED
# a mount point where a leftover layer would be
mkdir $D/card/ovpkg/layers/0009
mount -t tmpfs -o size=1m other $D/card/ovpkg/layers/0009
printf 'ovpkg-layer 0009\n' > $D/card/ovpkg/layers/0009/ovpkg-layer; echo precious > $D/card/ovpkg/layers/0009/file
refuses ovpkg rollback --root $R
[ "$(cat $D/card/ovpkg/layers/0009/file)" = precious ] && echo MOUNT-INTACT
umount $D/card/ovpkg/layers/0009; rmdir $D/card/ovpkg/layers/0009
eject --root $R >/dev/null
vcheck
checkClean
`)
	for _, w := range []string{"UNMARKED-KEPT", "MARKED-REMOVED", "EMPTY-REMOVED", "MOUNT-INTACT",
		"kept card " /* the message */, "precious-data: does not carry ovpkg's mark", "layers/0009"} {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r)
		}
	}
	refused(t, r, "leads off")
}
