package app_test

import (
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/owrttest"
)

// The seed's own sequence (OpenWrt-Zipit's README) on an OpenWrt-like
// root: busybox the only userland, the real opkg, a local feed.
func TestOpenWrtSeedSequence(t *testing.T) {
	r := owrttest.NewRoot(t, owrttest.Options{Opkg: true})
	r.Feed(t, "local",
		owrttest.Ipk{Name: "libfoo", Files: map[string]owrttest.File{"usr/lib/libfoo.so.1": {Data: "lib"}}},
		owrttest.Ipk{Name: "hello", Depends: "libfoo", Conffiles: []string{"/etc/hello.conf"},
			Files:    map[string]owrttest.File{"usr/bin/hello": owrttest.Program("hello from the card"), "etc/hello.conf": {Data: "greeting=1\n"}},
			Postinst: `touch "$IPKG_INSTROOT/etc/hello.postinst-ran"`,
			Prerm:    `rm -f "$IPKG_INSTROOT/etc/hello.postinst-ran"`},
	)
	res := r.Run(t, `
cp /usr/lib/opkg/status /mnt/status.before
opkg update >/dev/null
mkoverlay 64 /mnt/card.img
ovmount
ovpkg install -y hello   # no terminal here: without -y ovpkg refuses (issue 8.6)
hello
test -f /etc/hello.postinst-ran && echo POSTINST-RAN
ovpkg eject
test -e /usr/bin/hello || echo GONE
cmp /usr/lib/opkg/status /mnt/status.before && echo BASE-SAME
ovmount
hello
ovpkg remove -y hello
test -e /usr/bin/hello || echo REMOVED
ovpkg eject
cmp /usr/lib/opkg/status /mnt/status.before && echo BASE-SAME-END
`)
	t.Logf("%s", res)
	for _, s := range []string{"POSTINST-RAN", "GONE", "BASE-SAME", "REMOVED", "BASE-SAME-END"} {
		if !strings.Contains(res.Stdout, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if res.Code != 0 {
		t.Fatalf("exit %d", res.Code)
	}
}
