package app_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/internal/owrttest"
)

// End-to-end tests on an OpenWrt-like root (internal/owrttest): busybox
// the only userland, the real opkg built from ../shared/pm-src, local
// feeds built by the tests.

// seedOpkgConf is OpenWrt's opkg.conf plus the line the seed's README
// told its users to add.
const seedOpkgConf = owrttest.DefaultOpkgConf + "dest card /overlay\n"

func helloFeed(t *testing.T, r *owrttest.Root) {
	t.Helper()
	r.Feed(t, "local",
		owrttest.Ipk{Name: "libfoo", Files: map[string]owrttest.File{"usr/lib/libfoo.so.1": {Data: "lib"}}},
		owrttest.Ipk{Name: "hello", Depends: "libfoo", Conffiles: []string{"/etc/hello.conf"},
			Files: map[string]owrttest.File{"usr/bin/hello": owrttest.Program("hello from the card"),
				"etc/hello.conf": {Data: "greeting=1\n"}, "usr/share/hello/data": {Size: 200 << 10}},
			Postinst: `touch "$IPKG_INSTROOT/etc/hello.postinst-ran"`,
			Prerm:    `echo prerm-ran > /tmp/hello.prerm-ran`},
		owrttest.Ipk{Name: "badpost", Files: map[string]owrttest.File{"usr/bin/badpost": owrttest.Program("bad")},
			Postinst: "echo badpost postinst failing; exit 3"},
	)
}

func wantAll(t *testing.T, res nstest.Result, subs ...string) {
	t.Helper()
	all := res.Stdout + res.Stderr
	for _, s := range subs {
		if !strings.Contains(all, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if t.Failed() {
		t.Logf("%s", res)
	}
}

// The seed's own sequence (OpenWrt-Zipit's README), with the opkg.conf
// its users were told to write.
func TestOpenWrtSeedSequence(t *testing.T) {
	r := owrttest.NewRoot(t, owrttest.Options{Opkg: true, OpkgConf: seedOpkgConf})
	helloFeed(t, r)
	res := r.Run(t, `
cp /usr/lib/opkg/status /mnt/status.before
opkg update >/dev/null
# Plain opkg makes every dest's state directory: with the seed's line, in
# /overlay on the base (hidden once the card is mounted; documented).
test -d /overlay/usr/lib/opkg/info && echo PLAIN-OPKG-WROTE-CARD-DEST
rm -r /overlay/usr
mkoverlay 64 /mnt/card.img
ovmount
ovpkg install -y hello   # no terminal here: without -y ovpkg refuses (issue 8.6)
hello
test -f /etc/hello.postinst-ran && echo POSTINST-RAN
test -e /overlay/usr || echo NO-CARD-DEST-JUNK
ovpkg eject
test -e /usr/bin/hello || echo GONE
cmp /usr/lib/opkg/status /mnt/status.before && echo BASE-SAME
test -e /overlay/usr || echo NO-JUNK-IN-BASE
ovmount
hello
ovpkg remove -y hello
test -e /usr/bin/hello || echo REMOVED
ovpkg eject
cmp /usr/lib/opkg/status /mnt/status.before && echo BASE-SAME-END
`)
	if res.Code != 0 {
		t.Fatalf("seed sequence failed: %s", res)
	}
	wantAll(t, res, "PLAIN-OPKG-WROTE-CARD-DEST", "POSTINST-RAN", "NO-CARD-DEST-JUNK", "GONE", "BASE-SAME\n", "NO-JUNK-IN-BASE", "REMOVED", "BASE-SAME-END",
		"hello from the card\nPOSTINST-RAN", "/etc/opkg.conf:5", "leaves that line out",
		"installed on the card: hello 1.0-1, libfoo 1.0-1 (+200.0 KiB installed size, ")
	if strings.Contains(res.Stderr, "(0 B)") {
		t.Errorf("summary size still 0 B:\n%s", res)
	}
}

// Every package verb against the real opkg: dependencies, maintainer
// scripts, a conffile changed by the user and then upgraded (opkg's
// "Collected errors" with exit 0), list/files/status, history, rollback,
// a failing postinst undone, flatten and dedupe.
func TestOpenWrtOpkgVerbs(t *testing.T) {
	r := owrttest.NewRoot(t, owrttest.Options{Opkg: true,
		OpkgConf: owrttest.DefaultOpkgConf + "dest usb /mnt/usb\n"})
	helloFeed(t, r)
	r.Feed(t, "upd", owrttest.Ipk{Name: "hello", Version: "2.0-1", Depends: "libfoo", Conffiles: []string{"/etc/hello.conf"},
		Files:    map[string]owrttest.File{"usr/bin/hello": owrttest.Program("hello v2"), "etc/hello.conf": {Data: "greeting=2\n"}},
		Postinst: `touch "$IPKG_INSTROOT/etc/hello.postinst-ran"`})
	res := r.Run(t, `
mkdir -p /mnt/usb
cp /etc/opkg/customfeeds.conf /mnt/feeds.all
grep -v upd /mnt/feeds.all > /etc/opkg/customfeeds.conf   # the upgrade appears later
cp /usr/lib/opkg/status /mnt/status.before
opkg update >/dev/null
mkoverlay 64 /mnt/card.img >/dev/null
ovmount >/dev/null
ovpkg install -y hello
echo "RUN1: $(hello)"
ovpkg list
ovpkg list --json > /tmp/list.json; grep -q '"where": "card"' /tmp/list.json && echo LIST-JSON-CARD
ovpkg files hello
ovpkg status | grep -i packages
if ovpkg install -y badpost; then echo BADPOST-KEPT; else echo "BADPOST-FAILED=$?"; fi
test -e /usr/bin/badpost || echo BADPOST-UNDONE
opkg list-installed | grep -q badpost || echo BADPOST-NOT-IN-DB
echo mine > /etc/hello.conf
cp /mnt/feeds.all /etc/opkg/customfeeds.conf
opkg update >/dev/null
ovpkg upgrade -y hello
echo "RUN2: $(hello)"
echo "CONF: $(cat /etc/hello.conf)"
test -f /etc/hello.conf-opkg && echo NEW-CONF-BESIDE
ovpkg history
ovpkg rollback
echo "RUN3: $(hello)"
opkg list-installed | grep hello
ovpkg remove -y hello
test -e /usr/bin/hello || echo REMOVED
cat /tmp/hello.prerm-ran
ovpkg install -y hello >/dev/null
ovpkg dedupe
ovpkg flatten --to /mnt/flat.img --quiet | tee /tmp/flat.out
ovpkg eject >/dev/null
cmp /usr/lib/opkg/status /mnt/status.before && echo BASE-SAME
cp /mnt/flat.img /mnt/flat-check.img
UUID=$(sed -n 's/.*SD_UUID=\([0-9a-f-]*\).*/\1/p' /tmp/flat.out)
sed -i "s|^SD_ROOTFS=.*|SD_ROOTFS=/mnt/flat.img|; s|^SD_UUID=.*|SD_UUID=$UUID|" /etc/ovpkg.conf
ovmount >/dev/null
echo "FLAT: $(hello)"
ovpkg list | grep hello
ovpkg eject >/dev/null
# opkg rewrites every dest's status file after a change; the base outside
# the overlays is read-only while it runs for ovpkg, and opkg skips a dest
# on EROFS: the usb dest is left as it was.
test -e /mnt/usb/usr/lib/opkg/status || echo USB-DEST-UNTOUCHED
`)
	if res.Code != 0 {
		t.Fatalf("script failed: %s", res)
	}
	wantAll(t, res, "RUN1: hello from the card", "LIST-JSON-CARD", "/usr/bin/hello", "/etc/hello.conf",
		"BADPOST-FAILED=1", "BADPOST-UNDONE", "BADPOST-NOT-IN-DB", "badpost postinst failing",
		"RUN2: hello v2", "CONF: mine", "NEW-CONF-BESIDE", "reported errors but finished", "/etc/hello.conf-opkg",
		"RUN3: hello from the card", "hello - 1.0-1", "REMOVED", "prerm-ran", "BASE-SAME", "USB-DEST-UNTOUCHED", "FLAT: hello v2")
	for _, l := range strings.Split(res.Stdout, "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[0] == "hello" && f[1] == "1.0-1" && f[2] == "0" {
			t.Errorf("list shows size 0 for hello: %q", l)
		}
	}
	nstest.Need(t, "e2fsck")
	img := filepath.Join(r.Dir, "mnt", "flat-check.img")
	if out, err := exec.Command("e2fsck", "-fn", img+"?offset=1048576").CombinedOutput(); err != nil {
		t.Errorf("e2fsck of the flattened card: %v\n%s", err, out)
	}
}

// opkg's silent failures become clear errors before anything changes.
func TestOpenWrtOpkgNeeds(t *testing.T) {
	r := owrttest.NewRoot(t, owrttest.Options{Opkg: true})
	helloFeed(t, r)
	if err := os.Remove(filepath.Join(r.Dir, "bin", "gzip")); err != nil {
		t.Fatal(err)
	}
	res := r.Run(t, `
opkg update >/dev/null
mkoverlay 64 /mnt/card.img >/dev/null
ovmount >/dev/null
if ovpkg install -y hello; then echo INSTALLED; else echo "NO-GZIP=$?"; fi
ln -s /bin/busybox /bin/gzip
rmdir /var/lock
if ovpkg install -y hello; then echo INSTALLED; else echo "NO-LOCK=$?"; fi
mkdir /var/lock
ovpkg install -y hello >/dev/null && echo INSTALLED-NOW
ovpkg history | grep -c install
ovpkg eject >/dev/null
`)
	if res.Code != 0 {
		t.Fatalf("script failed: %s", res)
	}
	wantAll(t, res, "NO-GZIP=1", "opkg needs gzip on PATH", "NO-LOCK=1", "opkg needs the directory /var/lock", "INSTALLED-NOW", "nothing was changed")
}
