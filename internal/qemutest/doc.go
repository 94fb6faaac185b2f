// Package qemutest boots a real Linux kernel under QEMU for tests: Debian's
// own kernel (the package linux-image-amd64 depends on, downloaded once
// into the test cache with nstest.FetchDeb), an initramfs the test builds
// (busybox-static from Debian plus the modules it needs, in a newc cpio
// written here) that mounts the root disk read-only and executes the
// kernel's init= as a distribution's initramfs does, and root and data
// disks built as ext2/ext4 images with mke2fs -d from directories (no
// privileges, no loop devices).
//
// QEMU runs under TCG (no KVM on the test machines), with the serial
// console on a pipe: tests wait for markers in the console output, with a
// timeout per boot, never for a fixed time. Whatever a boot printed is in
// the test log when the test fails.
//
// It owns booting and watching. It does NOT know what is tested (the
// tests put their scripts on the root disk) and is never linked into the
// product.
package qemutest
