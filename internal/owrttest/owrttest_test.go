package owrttest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/owrttest"
)

// The root is what it claims: busybox only, a mount point, the real opkg
// reading a feed this package built, maintainer scripts run by busybox sh.
func TestRootRunsRealOpkg(t *testing.T) {
	r := owrttest.NewRoot(t, owrttest.Options{Opkg: true, Apk: true})
	r.Feed(t, "local",
		owrttest.Ipk{Name: "libfoo", Files: map[string]owrttest.File{"usr/lib/libfoo.so.1": {Data: "lib"}}},
		owrttest.Ipk{Name: "hello", Depends: "libfoo", Conffiles: []string{"/etc/hello.conf"},
			Files:    map[string]owrttest.File{"usr/bin/hello": owrttest.Program("hello from the feed"), "etc/hello.conf": {Data: "greeting=1\n"}},
			Postinst: `touch "$IPKG_INSTROOT/etc/hello.postinst-ran"`},
	)
	for _, p := range []string{"bin/bash", "usr/bin/bash", "usr/bin/dpkg", "sbin/e2fsck", "usr/bin/mountpoint"} {
		if _, err := os.Lstat(filepath.Join(r.Dir, p)); err == nil {
			t.Errorf("%s is in the busybox root", p)
		}
	}
	res := r.MustRun(t, `
awk '$5 == "/" { found = 1 } END { exit !found }' /proc/self/mountinfo && echo ROOT-IS-MOUNT
test -e /dev/loop-control && echo HAS-LOOP-CONTROL
command -v bash || echo NO-BASH
opkg update
opkg install hello
hello
test -f /etc/hello.postinst-ran && echo POSTINST-RAN
opkg list-installed
opkg files hello
apk --version
ovpkg --version
`)
	for _, s := range []string{"ROOT-IS-MOUNT", "HAS-LOOP-CONTROL", "NO-BASH", "hello from the feed", "POSTINST-RAN",
		"hello - 1.0-1", "libfoo - 1.0-1", "busybox - 1.36.1-r2", "/usr/bin/hello", "apk-tools 3"} {
		if !strings.Contains(res.Stdout, s) {
			t.Errorf("output lacks %q:\n%s", s, res)
		}
	}
}

// .ipk files and feeds are what opkg-lede reads: checked by the real
// opkg above; here that the same spec gives the same bytes and a large
// file is streamed.
func TestIpkReproducible(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	s := owrttest.Ipk{Name: "big", Files: map[string]owrttest.File{"usr/share/big": {Size: 3 << 20}, "usr/bin/x": owrttest.Program("x")}}
	p1, ctl, err := owrttest.WriteIpk(d1, s)
	if err != nil {
		t.Fatal(err)
	}
	p2, _, err := owrttest.WriteIpk(d2, s)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if string(b1) != string(b2) {
		t.Error("the same spec built different .ipk files")
	}
	if len(b1) < 3<<20 {
		t.Errorf(".ipk is %d bytes: the random payload compressed?", len(b1))
	}
	if !strings.Contains(ctl, "Installed-Size: 3145747\n") {
		t.Errorf("control:\n%s", ctl)
	}
	if err := owrttest.WriteFeed(d1); err != nil {
		t.Fatal(err)
	}
	idx, _ := os.ReadFile(filepath.Join(d1, "Packages"))
	for _, s := range []string{"Package: big\n", "Filename: big_1.0-1_all.ipk\n", "SHA256sum: "} {
		if !strings.Contains(string(idx), s) {
			t.Errorf("Packages lacks %q:\n%s", s, idx)
		}
	}
}
