package packaging_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/owrttest"
	"github.com/ovpkg/ovpkg/pkgmgr/apktest"
)

// bootScript runs a function of the installed /etc/init.d/ovmount the way
// OpenWrt's rc.common does for `start`/`stop` with USE_PROCD (it sources
// the script and calls start_service/stop_service); the test root has
// busybox but not OpenWrt's rc.common.
func bootScript(fn string) string {
	return "( . /etc/init.d/ovmount && " + fn + " )"
}

// seed is the seed's sequence run by the ovpkg the package installed,
// with the card mounted and ejected by the boot script as at boot and
// shutdown. $PM names the package manager's listing of ovpkg's files.
const seed = `
command -v ovpkg
test "$(readlink /etc/rc.d/S12ovmount)" = ../init.d/ovmount && test "$(readlink /etc/rc.d/K89ovmount)" = ../init.d/ovmount && echo BOOT-ENABLED
@BOOT@ && echo BOOT-NO-CONFIG
echo '# ovpkg: no card yet' > /etc/ovpkg.conf
@BOOT@ && echo BOOT-NOTHING-CONFIGURED
mkoverlay 64 /mnt/card.img
@BOOT@ && echo BOOTED
ovpkg status | grep -q '^mounted: .* on /overlay' && echo MOUNTED
ovpkg install -y hello
hello
@SHUTDOWN@ && echo SHUT-DOWN
test -e /usr/bin/hello || echo GONE
@BOOT@
hello
ovpkg remove -y hello
test -e /usr/bin/hello || echo REMOVED
eject && echo EJECTED
`

func seedScript() string {
	s := strings.ReplaceAll(seed, "@BOOT@", bootScript("start_service"))
	return strings.ReplaceAll(s, "@SHUTDOWN@", bootScript("stop_service"))
}

var seedWant = []string{"/usr/sbin/ovpkg", "BOOT-ENABLED", "BOOT-NO-CONFIG", "BOOT-NOTHING-CONFIGURED", "BOOTED", "MOUNTED",
	"hello from the card", "SHUT-DOWN", "GONE", "REMOVED", "EJECTED", "UNINSTALLED", "BOOT-DISABLED"}

// TestIpkOnOpenWrt: `make ipk`'s package installs ovpkg into the busybox
// OpenWrt root with the real opkg (its dependencies from the feed), and
// that copy, started by the boot script, runs the seed's sequence with
// opkg; opkg removes it again.
func TestIpkOnOpenWrt(t *testing.T) {
	r := owrttest.NewRoot(t, owrttest.Options{Opkg: true, NoOvpkg: true})
	ipk := build(t, "ipk")
	if err := os.WriteFile(filepath.Join(r.Dir, "etc/opkg/arch.conf"), []byte("arch all 1\narch noarch 1\narch "+owrtArch(t)+" 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Feed(t, "local",
		owrttest.Ipk{Name: "kmod-loop"}, owrttest.Ipk{Name: "kmod-fs-ext4"},
		owrttest.Ipk{Name: "libfoo", Files: map[string]owrttest.File{"usr/lib/libfoo.so.1": {Data: "lib"}}},
		owrttest.Ipk{Name: "hello", Depends: "libfoo", Files: map[string]owrttest.File{"usr/bin/hello": owrttest.Program("hello from the card")}},
	)
	b, err := os.ReadFile(ipk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.Dir, "root", filepath.Base(ipk)), b, 0o644); err != nil {
		t.Fatal(err)
	}
	res := r.Run(t, `
opkg update >/dev/null
opkg install /root/`+filepath.Base(ipk)+`
opkg status ovpkg | grep -q '^Status: install .* installed' && echo OPKG-INSTALLED
opkg files ovpkg
`+seedScript()+`
opkg remove ovpkg
test -e /usr/sbin/ovpkg || echo UNINSTALLED
test -e /etc/rc.d/S12ovmount || echo BOOT-DISABLED
`)
	t.Logf("%s", res)
	for _, s := range append([]string{"OPKG-INSTALLED", "/etc/init.d/ovmount", "Installing kmod-loop"}, seedWant...) {
		if !strings.Contains(res.Stdout, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if res.Code != 0 {
		t.Fatalf("exit %d", res.Code)
	}
}

// TestApkOnOpenWrt: `make apk`'s package, signed with a key the root
// trusts, in a repository with its dependencies: the real apk installs
// it, and that copy runs the seed's sequence with apk.
func TestApkOnOpenWrt(t *testing.T) {
	r := owrttest.NewRoot(t, owrttest.Options{Apk: true, NoOvpkg: true})
	key := apktest.NewKey(t, t.TempDir(), "ovpkg-test")
	p := build(t, "apk", "APK="+r.PM.Apk, "APK_SIGN_KEY="+key.Private)
	if !strings.Contains(p, "/apk/"+owrtArch(t)+"/ovpkg-"+version+"-r0.apk") {
		t.Errorf("package path %s", p)
	}
	repo := apktest.NewRepo(t, r.PM.Apk, filepath.Join(r.Dir, "srv/repo"), &key,
		apktest.Spec{Name: "kmod-loop"}, apktest.Spec{Name: "kmod-fs-ext4"},
		apktest.Spec{Name: "libfoo", Files: map[string]apktest.File{"usr/lib/libfoo.so.1": {Data: "lib"}}},
		apktest.Spec{Name: "hello", Depends: []string{"libfoo"}, Files: map[string]apktest.File{"usr/bin/hello": apktest.Program("hello from the card")}},
	)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo.Dir, filepath.Base(p)), b, 0o644); err != nil {
		t.Fatal(err)
	}
	repo.Reindex(t, r.PM.Apk, &key)
	apktest.InitRoot(t, r.PM.Apk, r.Dir, []string{"/srv/repo/packages.adb"}, key)
	res := r.Run(t, `
apk add ovpkg
apk info -e ovpkg && echo APK-INSTALLED
apk info -L ovpkg
`+seedScript()+`
apk del ovpkg
test -e /usr/sbin/ovpkg || echo UNINSTALLED
test -e /etc/rc.d/S12ovmount || echo BOOT-DISABLED
`)
	t.Logf("%s", res)
	for _, s := range append([]string{"APK-INSTALLED", "etc/init.d/ovmount", "Installing kmod-loop", "Executing ovpkg-" + version + "-r0.post-install"}, seedWant...) {
		if !strings.Contains(res.Stdout, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if res.Code != 0 {
		t.Fatalf("exit %d", res.Code)
	}
}

// owrtArch is the OpenWrt architecture build.sh names the host's build.
func owrtArch(t testing.TB) string {
	switch distName(t) {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64_generic"
	case "armv7":
		return "arm_cortex-a7_neon-vfpv4"
	case "mipsle":
		return "mipsel_24kc"
	case "mips":
		return "mips_24kc"
	}
	return "i386_pentium4"
}
