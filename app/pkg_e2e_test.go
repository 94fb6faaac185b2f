package app_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/pkgmgr/debtest"
)

// End-to-end tests of the package verbs over the REAL root's /usr, /etc,
// /var (the test namespace keeps the overlays private): real apt-get and
// dpkg install hermetic .deb files built with dpkg-deb.

// pkgScratch starts every script: $D is a tmpfs holding the card image
// and the config; the card mounts on $D/card; the real root is overlaid.
// $BASESUM is the base dpkg status's sha256 before anything ran.
func pkgScratch(dir string, sizeMiB int) string {
	return fmt.Sprintf(`
D=%s
export DEBIAN_FRONTEND=noninteractive
mount -t tmpfs -o size=512m scratch "$D/t"
export OVPKG_CONFIG=$D/t/ovpkg.conf
echo "MOUNTPOINT=$D/t/card" > "$OVPKG_CONFIG"
echo "OVERLAY_DIRS=usr etc var" >> "$OVPKG_CONFIG"
mkoverlay %d "$D/t/card.img" >/dev/null
BASESUM=$(sha256sum < /var/lib/dpkg/status)
baseSame() { [ "$(sha256sum < /var/lib/dpkg/status)" = "$BASESUM" ]; }
`, dir, sizeMiB)
}

func pkgRun(t *testing.T, sizeMiB int, body string) (nstest.Result, string) {
	t.Helper()
	nstest.RequireRoot(t)
	nstest.Need(t, "dpkg-deb", "apt-get", "sha256sum")
	dir := nstest.TempDir(t)
	if err := exec.Command("mkdir", "-p", filepath.Join(dir, "t")).Run(); err != nil {
		t.Fatal(err)
	}
	return nstest.Run(t, pkgScratch(dir, sizeMiB)+body), dir
}

func wantOut(t *testing.T, r nstest.Result, subs ...string) {
	t.Helper()
	all := r.Stdout + r.Stderr
	for _, s := range subs {
		if !strings.Contains(all, s) {
			t.Errorf("output lacks %q:\n%s", s, r)
		}
	}
}

// prefix makes package names unique per test.
func prefix(t *testing.T) string {
	return "ovt" + strings.ToLower(strings.NewReplacer("/", "", "_", "").Replace(t.Name()))[len("test"):]
}

func TestPkgE2EInstallEjectBack(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "dpkg-deb")
	p := prefix(t)
	debs := debtest.BuildStandard(t, t.TempDir(), p, 1<<20)
	lib, app, post, conf, _ := debtest.Names(p)
	r, _ := pkgRun(t, 64, fmt.Sprintf(`
ovmount >/dev/null
# The base (a Docker image) may carry its own policy-rc.d; hide it on
# this throwaway card so that ovpkg places and reports its own.
rm -f /usr/sbin/policy-rc.d
eject >/dev/null   # install mounts the card itself, as ovmount would
ovpkg install -y %[1]s %[2]s %[3]s %[4]s
grep -q '"state": "mounted"' <(ovpkg status --json) && echo INSTALL-MOUNTED
echo "RUN: $(%[5]s)"
test -f /var/lib/%[9]s/postinst-ran && echo POSTINST-RAN
test -e /var/lib/%[9]s/service-started || echo NOT-STARTED-OK
test -e /usr/sbin/policy-rc.d && echo POLICY-LEFT-BEHIND
UP=$(find "$D/t/card" -path '*/tree/var/lib/%[9]s/postinst-ran' | head -1); test -n "$UP" && echo POSTINST-ON-CARD
find "$D/t/card" -path '*/tree/etc/%[9]s.conf' | grep . >/dev/null && echo CONF-ON-CARD
find "$D/t/card" -path '*/tree/usr/bin/%[5]s' | grep . >/dev/null && echo APP-ON-CARD
dpkg-query -W -f='${Package} ${Status}\n' %[5]s %[6]s
unshare --mount sh -c 'umount -l /var && sha256sum < /var/lib/dpkg/status' > $D/t/sum-below
[ "$(cat $D/t/sum-below)" = "$BASESUM" ] && echo BASE-SAME-MOUNTED
ovpkg list --json > $D/t/list.json; cat $D/t/list.json
ovpkg files %[5]s
ovpkg status
ovpkg status --json | grep '"card_packages": 4' >/dev/null && echo STATUS-COUNT-OK
eject
hash -r; test -e /usr/bin/%[5]s || echo GONE-AFTER-EJECT
dpkg-query -W %[5]s 2>/dev/null || echo NOT-IN-DB-AFTER-EJECT
baseSame && echo BASE-SAME-AFTER-EJECT
ovmount >/dev/null
echo "BACK: $(%[5]s)"
ovpkg remove %[6]s </dev/null || echo "DEPENDANTS-NEED-YES=$?"
ovpkg remove -y %[5]s %[6]s %[7]s %[8]s
command -v %[5]s >/dev/null || echo REMOVED
eject
baseSame && echo BASE-SAME-END
`, debs.Lib, debs.App, debs.Daemon, debs.Conf, app, lib, post, conf, p))
	if r.Code != 0 {
		t.Fatalf("script failed: %s", r)
	}
	wantOut(t, r, "INSTALL-MOUNTED", "NOT-STARTED-OK", "RUN: hello from "+app, "POSTINST-RAN", "POSTINST-ON-CARD", "CONF-ON-CARD", "APP-ON-CARD",
		app+" install ok installed", "BASE-SAME-MOUNTED", `"where": "card"`, "card\t/usr/bin/"+app,
		"STATUS-COUNT-OK", "GONE-AFTER-EJECT", "NOT-IN-DB-AFTER-EJECT", "BASE-SAME-AFTER-EJECT",
		"BACK: hello from "+app, "DEPENDANTS-NEED-YES=1", "to remove (2): "+lib+" 1.0, "+app+" 1.0", "run again with --yes (-y)", "REMOVED", "BASE-SAME-END", "services not started")
}

func TestPkgE2ERefusals(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "dpkg-deb")
	p := prefix(t)
	dir := t.TempDir()
	debs := debtest.BuildStandard(t, dir, p, 64<<20)
	outside := debtest.Build(t, dir, debtest.Spec{Name: p + "-boot", Files: map[string]debtest.File{"boot/" + p + "-kernel": {Data: "x"}}})
	_, app, _, _, huge := debtest.Names(p)
	r, _ := pkgRun(t, 16, fmt.Sprintf(`
set +e
ovmount >/dev/null
echo garbage > $D/t/corrupt.deb
ovpkg install -y nosuchpackage-%[1]s; echo "UNKNOWN=$?"
ovpkg install -y $D/t/corrupt.deb; echo "CORRUPT=$?"
ovpkg install -y %[2]s; echo "HUGE=$?"
ovpkg install -y %[3]s; echo "OUTSIDE=$?"
test -e /boot/%[1]s-kernel || echo BOOT-UNTOUCHED
ovpkg install -y %[4]s; echo "NODEP=$?"
ovpkg remove -y coreutils; echo "BASEREMOVE=$?"
if [ "$(apt-get -s upgrade 2>/dev/null | grep -c '^Inst')" -gt 20 ]; then
  ovpkg upgrade -y; echo "UPGRADE=$?"
else
  echo "UPGRADE=1 not enough space on the card (skipped: few upgrades pending)"
fi
ovpkg --help >/dev/null
ovpkg install --pm opkg -y x; echo "NOPM=$?"
flock /run/ovpkg/lock sleep 5 & sleep 0.5
ovpkg install -y %[4]s; echo "LOCKED=$?"
wait
eject >/dev/null
ovpkg install -y nosuchpackage-%[1]s; echo "UNMOUNTED-UNKNOWN=$?"
[ -e /run/ovpkg/mounts.json ] && echo STILL-MOUNTED || echo EJECTED-AGAIN
ovmount >/dev/null
dpkg-query -W %[5]s %[6]s 2>/dev/null || echo NONE-INSTALLED
eject && echo EJECTED
baseSame && echo BASE-SAME
`, p, debs.Huge, outside, debs.App, app, huge))
	wantOut(t, r, "UNKNOWN=1", "Unable to locate package nosuchpackage", "CORRUPT=1", "not a valid package file",
		"HUGE=1", "not enough space on the card", "OUTSIDE=1", "writes outside the overlaid directories", "BOOT-UNTOUCHED",
		"NODEP=1", "BASEREMOVE=1", "UPGRADE=1", "part of the base root", "NOPM=1", "no package manager found",
		"LOCKED=1", "another ovpkg command is running", "UNMOUNTED-UNKNOWN=1", "EJECTED-AGAIN", "NONE-INSTALLED", "BASE-SAME", "nothing was changed", "EJECTED")
}

func TestPkgE2ECardFillsUp(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "dpkg-deb")
	p := prefix(t)
	debs := debtest.BuildStandard(t, t.TempDir(), p, 40<<20)
	_, _, _, _, huge := debtest.Names(p)
	r, _ := pkgRun(t, 24, fmt.Sprintf(`
set +e
ovmount >/dev/null
ovpkg install -y --no-space-check %[1]s; echo "FULL=$?"
dpkg --audit && echo AUDIT-CLEAN
dpkg-query -W -f='${Status}\n' %[2]s 2>&1 || echo not-installed
ovpkg status
eject && echo EJECTED
baseSame && echo BASE-SAME
`, debs.Huge, huge))
	// The install ran as a transaction: its layer is dropped, so the card
	// (and the package database on it) is exactly as before.
	wantOut(t, r, "FULL=1", "card filled up", "No space left on device", "undone: the card is as it was before", "eject` still works",
		"AUDIT-CLEAN", "not-installed", "BASE-SAME", "EJECTED")
}

func TestPkgE2EInterrupted(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "dpkg-deb")
	p := prefix(t)
	slow := debtest.Build(t, t.TempDir(), debtest.Spec{Name: p + "-slow", Files: map[string]debtest.File{"usr/share/" + p + "/x": {Data: "x"}},
		Postinst: "touch /run/ovpkg/" + p + "-started; setsid sleep 3127 & exec sleep 3128"})
	for _, sig := range []string{"TERM", "INT", "KILL"} {
		t.Run(sig, func(t *testing.T) {
			r, _ := pkgRun(t, 32, fmt.Sprintf(`
set +e
# Wait with a bash builtin, not sleep(1): a program started from the
# overlaid /usr while ovpkg runs holds the overlays, and ovpkg then cannot
# give the install a layer of its own (it says so and runs untracked).
mkfifo /run/ovpkg/nap; exec 9<>/run/ovpkg/nap
nap() { read -t "$1" -u 9 || true; }
ovmount >/dev/null
ovpkg install -y %[1]s & OV=$!
for i in $(seq 100); do [ -e /run/ovpkg/%[2]s-started ] && break; nap 0.1; done
kill -%[3]s $OV; wait $OV; echo "CODE=$?"
nap 0.5
ps -eo args | grep -x 'sleep 312[78]' >/dev/null && echo LEFTOVER || echo NO-LEFTOVER
# After SIGKILL the transaction's layer is still stacked, uncommitted:
# ovmount (like any ovpkg change) finds the journal and drops it.
ovmount
dpkg-query -W -f='${Status}\n' %[2]s-slow 2>&1 || echo NOT-INSTALLED
dpkg --audit && echo AUDIT-CLEAN
ovpkg history
eject && echo EJECTED
baseSame && echo BASE-SAME
`, slow, p, sig))
			wantOut(t, r, "NO-LEFTOVER", "NOT-INSTALLED", "AUDIT-CLEAN", "BASE-SAME", "EJECTED")
			if sig != "KILL" {
				wantOut(t, r, "CODE=1", "interrupted", "undone: the card is as it was before")
			} else {
				wantOut(t, r, "was interrupted", "as before it")
			}
		})
	}
}

// TestPkgE2EHelloFromArchive installs Debian's hello from the configured
// archive (cached between runs: ARCHIVE_DIR on the test cache, kept);
// skipped when the archive cannot be reached (a failure under CI).
func TestPkgE2EHelloFromArchive(t *testing.T) {
	nstest.RequireRoot(t)
	needArchive(t, "hello")
	r, _ := pkgRun(t, 64, archiveCache(t)+`
ovmount >/dev/null
ovpkg install -y hello
hello
ovpkg list
ls /var/cache/apt/archives/hello_*.deb 2>/dev/null || echo NOT-IN-VAR-CACHE
find "$D/t/card/ovpkg/layers" -name '*.deb' | grep . || echo NO-DEB-IN-LAYERS
eject
hash -r; test -e /usr/bin/hello || echo GONE
baseSame && echo BASE-SAME
`)
	if r.Code != 0 {
		t.Fatalf("script failed: %s", r)
	}
	wantOut(t, r, "Hello, world!", "hello", "NOT-IN-VAR-CACHE", "NO-DEB-IN-LAYERS", "GONE", "BASE-SAME")
}

// needArchive skips (fails under CI) unless apt can resolve pkgs and
// Debian's archive answers.
func needArchive(t *testing.T, pkgs ...string) {
	t.Helper()
	nstest.NeedArchive(t, pkgs...)
}

// archiveCache is a script fragment: the test cache of Debian archives
// (kept between runs, one directory per test: nstest.AptArchives, so that
// two apt runs never meet on its lock) bind-mounted at $D/t/archives,
// outside the overlaid directories, and named in the config as
// ARCHIVE_DIR with KEEP_ARCHIVES=yes, so apt finds them warm. Run it
// before ovmount.
func archiveCache(t *testing.T) string {
	dir := nstest.AptArchives(t, "app-"+t.Name())
	return fmt.Sprintf(`
mkdir -p "$D/t/archives"; mount --bind %q "$D/t/archives"
echo "ARCHIVE_DIR=$D/t/archives" >> "$OVPKG_CONFIG"
echo "KEEP_ARCHIVES=yes" >> "$OVPKG_CONFIG"
`, dir)
}

// TestPkgE2EScriptWritesOutside: a package whose files are all in the
// overlaid directories (so the path check passes) but whose postinst
// writes to the base root elsewhere is stopped by the read-only base:
// the write fails, the install fails and is undone, nothing lands.
func TestPkgE2EScriptWritesOutside(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "dpkg-deb")
	p := prefix(t)
	outside := "/srv/" + p + "-postinst"
	t.Cleanup(func() { os.Remove(outside + "/x"); os.Remove(outside) })
	deb := debtest.Build(t, t.TempDir(), debtest.Spec{Name: p + "-sneaky", Files: map[string]debtest.File{"usr/share/" + p + "/x": {Data: "x"}},
		Postinst: "mkdir -p " + outside + " && echo x > " + outside + "/x"})
	r, _ := pkgRun(t, 32, fmt.Sprintf(`
set +e
ovmount >/dev/null
ovpkg install -y %[1]s; echo "SNEAKY=$?"
test -e %[2]s && echo LANDED-OUTSIDE || echo NOTHING-OUTSIDE
dpkg-query -W -f='${Status}\n' %[3]s-sneaky 2>&1 || echo NOT-INSTALLED
dpkg --audit && echo AUDIT-CLEAN
test -e /usr/share/%[3]s/x || echo FILES-GONE
eject && echo EJECTED
baseSame && echo BASE-SAME
`, deb, outside, p))
	wantOut(t, r, "SNEAKY=1", "write outside the overlaid directories", "Read-only file system", "undone: the card is as it was before",
		"NOTHING-OUTSIDE", "NOT-INSTALLED", "AUDIT-CLEAN", "FILES-GONE", "EJECTED", "BASE-SAME")
}
