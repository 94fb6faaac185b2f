// Package owrttest is the OpenWrt test bed: the real opkg and apk built
// from ../shared/pm-src (once per machine, cached), an OpenWrt-like root
// whose only userland is Debian's busybox-static, .ipk packages and
// opkg feeds built in Go, and a way to run a busybox shell script inside
// that root (a chroot in a private mount namespace, /dev /proc /sys /run
// mounted, the root bind-mounted on itself so that it is a mount point as
// on a device).
//
// Use:
//
//	r := owrttest.NewRoot(t, owrttest.Options{Opkg: true})
//	feed := r.Feed(t, "local", owrttest.Ipk{Name: "hello", Files: ...})
//	res := r.Run(t, `opkg update && ovpkg install -y hello`)
//
// It is for tests only and installs nothing on the host: missing sources
// or build tools skip the test (fail under CI); `make test-deps`
// installs the build tools.
package owrttest
