package app_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/owrttest"
	"github.com/ovpkg/ovpkg/pkgmgr/apktest"
)

// apkRoot is an OpenWrt 25.12-like root: busybox, the real apk with a
// database holding one base package, and a local repository under
// /srv/repo signed with a key the root trusts.
type apkRoot struct {
	*owrttest.Root
	key  apktest.Key
	repo apktest.Repo
}

var (
	apkLibfoo = apktest.Spec{Name: "libfoo", Files: map[string]apktest.File{"usr/lib/libfoo.so.1": {Data: "lib"}}}
	apkHello  = apktest.Spec{Name: "hello", Depends: []string{"libfoo"},
		Files: map[string]apktest.File{"usr/bin/hello": apktest.Program("hello from the card"), "etc/hello.conf": {Data: "greeting=1\n"}},
		Scripts: map[string]string{
			"post-install":  "touch /etc/hello.postinst-ran",
			"pre-deinstall": "rm -f /etc/hello.postinst-ran",
		}}
	apkBase = apktest.Spec{Name: "base-files", Version: "1560-r1", Files: map[string]apktest.File{"etc/openwrt_release": {Data: "DISTRIB_ID='OpenWrt'\n"}}}
)

func newApkRoot(t *testing.T, specs ...apktest.Spec) *apkRoot {
	t.Helper()
	r := &apkRoot{Root: owrttest.NewRoot(t, owrttest.Options{Apk: true})}
	r.key = apktest.NewKey(t, t.TempDir(), "ovpkg-test")
	r.repo = apktest.NewRepo(t, r.PM.Apk, filepath.Join(r.Dir, "srv/repo"), &r.key, append([]apktest.Spec{apkBase}, specs...)...)
	// The database lives in /lib/apk/db, /etc/apk: OpenWrt's /var is a
	// link to /tmp (tmpfs at run time), where apk only keeps caches.
	apktest.InitRoot(t, r.PM.Apk, r.Dir, []string{"/srv/repo/packages.adb"}, r.key)
	if out, err := apktest.Command(r.PM.Apk, "--root", r.Dir, "--repositories-file", "/dev/null", "-X", r.repo.Index, "add", "base-files").CombinedOutput(); err != nil {
		t.Fatalf("base install: %v\n%s", err, out)
	}
	return r
}

// The seed's sequence with apk: ovpkg detects apk, installs from a signed
// repository through the overlays (a dependency and a script run
// chrooted by apk), eject hides it and leaves the base database
// byte-identical, ovmount brings it back, and remove takes the
// dependency nothing needs any more.
func TestApkSeedSequence(t *testing.T) {
	r := newApkRoot(t, apkLibfoo, apkHello)
	res := r.Run(t, `
cp /lib/apk/db/installed /mnt/installed.before
cp /etc/apk/world /mnt/world.before
mkoverlay 64 /mnt/card.img
ovmount
ovpkg install --yes hello
hello
test -f /etc/hello.postinst-ran && echo POSTINST-RAN
apk info -e hello libfoo
ovpkg list
ovpkg files hello
ovpkg status
ovpkg update && echo UPDATE-OK
ovpkg configure && echo CONFIGURE-OK
ovpkg eject
test -e /usr/bin/hello || echo GONE
cmp /lib/apk/db/installed /mnt/installed.before && cmp /etc/apk/world /mnt/world.before && echo BASE-SAME
ovmount
hello
ovpkg remove --yes hello
test -e /usr/bin/hello || echo REMOVED
test -e /usr/lib/libfoo.so.1 || echo DEPENDENCY-REMOVED
test -e /etc/hello.postinst-ran || echo PREDEINST-RAN
apk info -e libfoo || echo APK-AGREES
ovpkg eject
cmp /lib/apk/db/installed /mnt/installed.before && echo BASE-SAME-END
`)
	t.Logf("%s", res)
	for _, s := range []string{"hello from the card", "POSTINST-RAN", "UPDATE-OK", "CONFIGURE-OK", "2 on the card, 1 in the base (apk)", "GONE", "BASE-SAME", "REMOVED",
		"DEPENDENCY-REMOVED", "PREDEINST-RAN", "APK-AGREES", "BASE-SAME-END"} {
		if !strings.Contains(res.Stdout, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	// ovpkg list: both on the card, the base package not listed.
	if !strings.Contains(res.Stdout, "hello") || !regexpLine(res.Stdout, `^libfoo\s+1\.0-r1\s+.*card`) || strings.Contains(res.Stdout, "base-files") {
		t.Errorf("ovpkg list did not show hello and libfoo on the card (and base-files not)")
	}
	if !regexpLine(res.Stdout, `^card\s+/usr/bin/hello$`) {
		t.Errorf("ovpkg files hello did not say /usr/bin/hello is on the card")
	}
	if res.Code != 0 {
		t.Fatalf("exit %d", res.Code)
	}
}

// Transactions with apk: an upgrade is one, rollback undoes it (apk's
// database and world with it); the base's own package is refused by
// remove; an unsigned package is refused before anything is written
// unless the root's apk configuration allows it; a package writing
// outside the overlays fails on the read-only base and is undone.
func TestApkTransactionsAndRefusals(t *testing.T) {
	r := newApkRoot(t, apkLibfoo, apkHello,
		apktest.Spec{Name: "kernel-thing", Files: map[string]apktest.File{"boot/vmlinuz-x": {Data: "k"}}})
	res := r.Run(t, `
mkoverlay 64 /mnt/card.img
ovmount
ovpkg install --yes hello
hello
ovpkg eject
`)
	if res.Code != 0 {
		t.Fatalf("install: %s", res)
	}
	// An upgrade appears in the repository.
	r.repo.Add(t, r.PM.Apk, &r.key, apktest.Spec{Name: "hello", Version: "1.1-r1", Depends: []string{"libfoo"},
		Files: map[string]apktest.File{"usr/bin/hello": apktest.Program("hello 1.1 from the card"), "etc/hello.conf": {Data: "greeting=1\n"}}})
	// A /boot in the base: the package's file there meets the read-only base.
	if err := os.MkdirAll(filepath.Join(r.Dir, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	unsignedDir := filepath.Join(r.Dir, "root", "unsigned")
	if err := os.MkdirAll(unsignedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	apktest.Build(t, r.PM.Apk, unsignedDir, nil, apktest.Spec{Name: "unsigned", Files: map[string]apktest.File{"usr/bin/unsigned": apktest.Program("unsigned")}})
	res = r.Run(t, `
ovmount
ovpkg upgrade --yes
hello
apk info -e hello && apk list --installed hello
ovpkg history
ovpkg rollback
hello
grep -A1 '^P:hello$' /lib/apk/db/installed
ovpkg remove base-files && echo BASE-REMOVED || echo BASE-REFUSED
apk info -e base-files
ovpkg install --yes /root/unsigned/unsigned-1.0-r1.apk && echo UNSIGNED-INSTALLED || echo UNSIGNED-REFUSED
test -e /usr/bin/unsigned || echo NOTHING-WRITTEN
ovpkg install --yes kernel-thing && echo BOOT-INSTALLED || echo BOOT-REFUSED
test -e /boot/vmlinuz-x || echo BOOT-UNTOUCHED
apk info -e kernel-thing || echo APK-AGREES-NOT-INSTALLED
echo allow-untrusted > /etc/apk/config
ovpkg install --yes /root/unsigned/unsigned-1.0-r1.apk && echo UNSIGNED-ALLOWED
unsigned
ovpkg eject
`)
	t.Logf("%s", res)
	for _, s := range []string{"hello 1.1 from the card", "hello-1.1-r1", "hello from the card\n", "V:1.0-r1", "BASE-REFUSED", "base-files",
		"UNSIGNED-REFUSED", "NOTHING-WRITTEN", "BOOT-REFUSED", "BOOT-UNTOUCHED", "APK-AGREES-NOT-INSTALLED", "UNSIGNED-ALLOWED", "unsigned\n"} {
		if !strings.Contains(res.Stdout, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	for _, s := range []string{"UNTRUSTED", "allow-untrusted", "part of the base root", "boot/vmlinuz-x", "write outside the overlaid directories", "Read-only file system",
		"(install) undone: the card is as it was before"} {
		if !strings.Contains(res.Stderr, s) {
			t.Errorf("messages lack %q", s)
		}
	}
	if res.Code != 0 {
		t.Fatalf("exit %d", res.Code)
	}
}

// regexpLine says whether a line of s matches re.
func regexpLine(s, re string) bool {
	return regexp.MustCompile("(?m)" + re).MatchString(s)
}
