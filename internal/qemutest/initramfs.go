package qemutest

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/kmod"
)

// InitramfsModules are what the test initramfs loads to mount a virtio
// root disk with ext4 (Debian builds all of them as modules).
var InitramfsModules = []string{"virtio_pci", "virtio_blk", "ext4", "crc32c_generic"}

// initScript is the initramfs's /init: what a distribution's initramfs
// does, in a few lines. It loads the modules, waits for the root device,
// mounts it read-only (rw with "rw" on the command line), moves /dev,
// /proc, /sys and a /run tmpfs into it as initramfs-tools does, and
// switch_roots into the kernel's init= (default /sbin/init) with the
// arguments and environment the kernel gave.
//
// With "qemutest.bare" it instead unmounts everything first, so the
// init finds what the kernel itself leaves when it mounts the root
// without an initramfs: only the root, nothing on /proc /sys /dev.
const initScript = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.list); do insmod /$m || echo "initramfs: insmod $m failed"; done
root=/dev/vda init=/sbin/init mode=ro bare=
for w in $(cat /proc/cmdline); do
	case "$w" in
	root=*) root=${w#root=};;
	init=*) init=${w#init=};;
	rw) mode=rw;;
	qemutest.bare) bare=1;;
	esac
done
i=0
while [ ! -b "$root" ]; do
	i=$((i+1))
	[ $i -gt 300 ] && { echo "initramfs: no root device $root"; poweroff -f; }
	sleep 0.02
done
mkdir -p /root
mount -t ext4 -o $mode "$root" /root || { echo "initramfs: cannot mount $root"; poweroff -f; }
if [ -n "$bare" ]; then
	umount /dev /sys /proc
else
	mkdir -p /run
	mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
	mkdir -p /run/initramfs
	for d in dev proc sys run; do mount --move /$d /root/$d; done
fi
echo "<1>QEMUTEST switch_root to $init" > /root/dev/kmsg 2>/dev/null || echo "<1>QEMUTEST switch_root to $init" > /dev/kmsg 2>/dev/null
exec switch_root /root "$init" "$@"
`

// Initramfs builds the test initramfs for k (busybox bb) and returns its
// path.
func Initramfs(t testing.TB, k *Kernel, bb string) string {
	t.Helper()
	files, err := (&kmod.Dir{Path: k.Modules}).Closure(InitramfsModules...)
	if err != nil {
		t.Fatalf("initramfs modules: %v", err)
	}
	var tr Tree
	for _, d := range []string{"bin", "dev", "proc", "sys", "root", "run", "lib/modules"} {
		tr.Dir(d)
	}
	tr.CharDev("dev/console", 5, 1)
	tr.CharDev("dev/null", 1, 3)
	tr.CharDev("dev/kmsg", 1, 11)
	if err := tr.CopyFile("bin/busybox", bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range BusyboxApplets(t, bb) {
		if a != "busybox" {
			tr.Symlink("bin/"+a, "busybox")
		}
	}
	var list []string
	for _, f := range files {
		rel, _ := filepath.Rel(k.Modules, f)
		name := filepath.Join("lib/modules", rel)
		if err := tr.CopyFile(name, f, 0o644); err != nil {
			t.Fatal(err)
		}
		list = append(list, name)
	}
	tr.File("modules.list", []byte(strings.Join(list, "\n")+"\n"), 0o644)
	tr.File("init", []byte(initScript), 0o755)
	out := filepath.Join(t.TempDir(), "initrd.cpio")
	if err := tr.Write(out); err != nil {
		t.Fatal(err)
	}
	return out
}
