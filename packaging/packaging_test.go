// Tests of the packages ovpkg ships (docs/packaging.md): the .deb built by
// build.sh installs with the real dpkg into a throwaway Debian root (with
// Debian's own deb-systemd-helper and update-rc.d), `make install` installs
// the same files, and the .ipk and .apk install ovpkg into the busybox
// OpenWrt root with the real opkg and apk, where the installed copy runs the
// seed's sequence, driven by the boot script.
package packaging_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ovpkg/ovpkg/app"
	"github.com/ovpkg/ovpkg/internal/nstest"
)

// version is the package version the tests build.
const version = "0.0.4242"

// distName is the `make cross` directory name of the host's build.
func distName(t testing.TB) string {
	switch runtime.GOARCH {
	case "amd64", "arm64", "mips", "mipsle", "386":
		return runtime.GOARCH
	case "arm":
		return "armv7"
	}
	nstest.Skip(t, "no package architecture for GOARCH=%s", runtime.GOARCH)
	return ""
}

var (
	distOnce sync.Once
	distDir  string
	distErr  error
)

// dist lays out what `make cross` makes for the host's architecture (the
// product binary: $OVPKG_PRODUCT_BIN under make test, else built here;
// the man pages) and the completion script, once per test process, and
// returns the directory holding dist/ and completion/ovpkg.
func dist(t testing.TB) string {
	t.Helper()
	name := distName(t)
	distOnce.Do(func() {
		distDir, distErr = os.MkdirTemp("", "ovpkg-packaging-")
		if distErr != nil {
			return
		}
		d := filepath.Join(distDir, "dist", "linux-"+name)
		root := nstest.ModuleRoot()
		run := func(dir string, env []string, argv ...string) {
			if distErr != nil {
				return
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				distErr = fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
			}
		}
		bin := filepath.Join(d, "sbin", "ovpkg")
		if p := os.Getenv("OVPKG_PRODUCT_BIN"); p != "" {
			run(root, nil, "install", "-D", "-m", "0755", filepath.Join(p, "ovpkg"), bin)
		} else {
			run(root, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", bin, "./cmd/ovpkg")
		}
		for _, n := range append(app.Names()[1:], app.InitOverlay) { // as make cross links TOOLS
			if distErr == nil {
				distErr = os.Symlink("ovpkg", filepath.Join(d, "sbin", n))
			}
		}
		run(root, nil, "go", "run", "./internal/mangen", filepath.Join(d, "share", "man", "man8"))
		run(root, nil, "go", "run", "./internal/bashcomp", filepath.Join(distDir, "completion", "ovpkg"))
	})
	if distErr != nil {
		t.Fatalf("preparing the build to package: %v", distErr)
	}
	return distDir
}

// build runs packaging/build.sh KIND for the host's architecture and
// returns the package it wrote.
func build(t testing.TB, kind string, env ...string) string {
	t.Helper()
	nstest.Need(t, "tar", "gzip")
	d := dist(t)
	out := t.TempDir()
	cmd := exec.Command("sh", filepath.Join(nstest.ModuleRoot(), "packaging", "build.sh"), kind)
	cmd.Dir = d
	cmd.Env = append(os.Environ(), "PKG_VERSION="+version, "DIST="+filepath.Join(d, "dist"), "OUT="+out,
		"ARCHES="+distName(t), "COMPLETION="+filepath.Join(d, "completion", "ovpkg"), "SOURCE_DATE_EPOCH=1700000000")
	cmd.Env = append(cmd.Env, env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("build.sh %s: %v\n%s%s", kind, err, so.String(), se.String())
	}
	p := strings.TrimSpace(so.String())
	if _, err := os.Stat(p); err != nil || strings.Contains(p, "\n") {
		t.Fatalf("build.sh %s printed %q", kind, p)
	}
	return p
}

func output(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// debFiles are the paths the .deb holds (not directories), as dpkg-deb
// lists them, with their owner and mode.
var debFiles = []string{
	"-rwxr-xr-x root/root ./etc/init.d/ovmount",
	"-rwxr-xr-x root/root ./etc/init.d/overlay-boot",
	"-rw-r--r-- root/root ./lib/systemd/system/ovmount.service",
	"-rw-r--r-- root/root ./lib/systemd/system/ovpkg-boot-ok.service",
	"-rw-r--r-- root/root ./lib/systemd/system/ovpkg-subhost@.service",
	"-rwxr-xr-x root/root ./usr/sbin/ovpkg",
	"-rw-r--r-- root/root ./usr/share/bash-completion/completions/ovpkg",
	"-rw-r--r-- root/root ./usr/share/doc/ovpkg/changelog.gz",
	"-rw-r--r-- root/root ./usr/share/doc/ovpkg/copyright",
	"-rw-r--r-- root/root ./usr/share/man/man8/ovpkg.8.gz",
}

// debNames are the binary's other names, linked in /usr/sbin, with a man
// page and a completion link each (eject is not: Debian has util-linux's).
var debNames = []string{"mkoverlay", "ovmount", "uovmount", "overlay-boot", "overlay-go", "overlay-stop"}

func wantDeb() []string {
	// init-overlay (started by the kernel: init=) is linked, without a
	// man page or completion.
	w := append([]string{"lrwxrwxrwx root/root ./usr/sbin/init-overlay -> ovpkg"}, debFiles...)
	for _, n := range debNames {
		w = append(w, "lrwxrwxrwx root/root ./usr/sbin/"+n+" -> ovpkg",
			"lrwxrwxrwx root/root ./usr/share/bash-completion/completions/"+n+" -> ovpkg",
			"-rw-r--r-- root/root ./usr/share/man/man8/"+n+".8.gz")
	}
	sortByPath(w)
	return w
}

// contents lists a .deb's non-directory entries as "mode owner path".
func contents(t testing.TB, deb string) []string {
	var got []string
	for _, l := range strings.Split(output(t, "dpkg-deb", "--contents", deb), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[0][0] == 'd' {
			continue
		}
		got = append(got, f[0]+" "+f[1]+" "+strings.Join(f[5:], " "))
	}
	sortByPath(got)
	return got
}

// sortByPath sorts "mode owner path [-> target]" lines by path.
func sortByPath(l []string) {
	sort.Slice(l, func(i, j int) bool { return strings.Fields(l[i])[2] < strings.Fields(l[j])[2] })
}

// TestDebPackage checks the .deb the way lintian would where it matters
// (lintian itself pulls 147 packages onto this machine: not cheap), then
// installs, removes and purges it with the real dpkg in a throwaway
// Debian root: busybox, libc6, perl-base and init-system-helpers (Debian's
// deb-systemd-helper and update-rc.d) unpacked from the archive, dpkg
// working on it with --root, maintainer scripts chrooted into it. The
// host's dpkg database and log are never touched.
func TestDebPackage(t *testing.T) {
	nstest.Need(t, "dpkg-deb", "dpkg", "md5sum", "gzip")
	deb := build(t, "deb")
	arch := strings.TrimSpace(output(t, "dpkg", "--print-architecture"))
	if filepath.Base(deb) != "ovpkg_"+version+"_"+arch+".deb" {
		t.Errorf("file name %s", filepath.Base(deb))
	}
	// Control fields.
	for field, want := range map[string]string{"Package": "ovpkg", "Version": version, "Architecture": arch,
		"Section": "admin", "Priority": "optional", "Recommends": "e2fsprogs"} {
		if got := strings.TrimSpace(output(t, "dpkg-deb", "--field", deb, field)); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	desc := output(t, "dpkg-deb", "--field", deb, "Description")
	if len(strings.Split(strings.TrimSpace(desc), "\n")) < 3 || len(strings.SplitN(desc, "\n", 2)[0]) > 80 {
		t.Errorf("Description needs a short synopsis and a long part:\n%s", desc)
	}
	// The files, their owner and modes.
	want := wantDeb()
	if got := contents(t, deb); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("contents:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Installed-Size matches the files (KiB, as dpkg-gencontrol counts).
	x := t.TempDir()
	output(t, "dpkg-deb", "--extract", deb, x)
	output(t, "dpkg-deb", "--control", deb, filepath.Join(x, "DEBIAN"))
	size := strings.TrimSpace(output(t, "dpkg-deb", "--field", deb, "Installed-Size"))
	du := strings.Fields(output(t, "du", "-sk", "--apparent-size", "--exclude=DEBIAN", x))[0]
	if size != du {
		t.Errorf("Installed-Size %s, the files take %s KiB", size, du)
	}
	// md5sums covers every file and matches.
	md5 := exec.Command("md5sum", "--check", "--strict", "--quiet", "DEBIAN/md5sums")
	md5.Dir = x
	if out, err := md5.CombinedOutput(); err != nil {
		t.Errorf("md5sums: %v\n%s", err, out)
	}
	if n, want := len(strings.Split(strings.TrimSpace(readFile(t, filepath.Join(x, "DEBIAN/md5sums"))), "\n")), len(debFiles)+len(debNames); n != want {
		t.Errorf("md5sums lists %d files, want the %d regular ones", n, want)
	}
	// Conffiles exist and live in /etc; maintainer scripts are sh, set -e.
	for _, cf := range strings.Fields(readFile(t, filepath.Join(x, "DEBIAN/conffiles"))) {
		if !strings.HasPrefix(cf, "/etc/") {
			t.Errorf("conffile %s outside /etc", cf)
		}
		if _, err := os.Stat(filepath.Join(x, cf)); err != nil {
			t.Errorf("conffile %s not in the package", cf)
		}
	}
	for _, s := range []string{"postinst", "postrm"} {
		p := filepath.Join(x, "DEBIAN", s)
		b := readFile(t, p)
		if !strings.HasPrefix(b, "#!/bin/sh\n") || !strings.Contains(b, "\nset -e\n") {
			t.Errorf("%s: not a `#!/bin/sh` script with set -e", s)
		}
		output(t, "sh", "-n", p)
	}
	// Compressed man pages and changelog; the completion parses.
	for _, gz := range []string{"usr/share/man/man8/ovpkg.8.gz", "usr/share/doc/ovpkg/changelog.gz"} {
		output(t, "gzip", "--test", filepath.Join(x, gz))
	}
	if _, err := exec.LookPath("bash"); err == nil {
		output(t, "bash", "-n", filepath.Join(x, "usr/share/bash-completion/completions/ovpkg"))
	}
	unit := readFile(t, filepath.Join(x, "lib/systemd/system/ovmount.service"))
	for _, s := range []string{"ExecStart=/usr/sbin/ovpkg ovmount --boot\n", "ExecStop=/usr/sbin/ovpkg eject\n", "WantedBy=sysinit.target\n",
		"After=local-fs.target", "Before=sysinit.target", "ConditionPathExists=/etc/ovpkg.conf\n", "DefaultDependencies=no\n"} {
		if !strings.Contains(unit, s) {
			t.Errorf("ovmount.service lacks %q", s)
		}
	}
	installDeb(t, deb)
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fileSum(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "-"
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// installDeb installs deb into a throwaway Debian root and removes it.
func installDeb(t *testing.T, deb string) {
	nstest.RequireRoot(t)
	nstest.Need(t, "systemd-analyze")
	busybox := filepath.Join(nstest.ExtractDeb(t, "busybox-static"), "bin", "busybox")
	var debs []string
	for _, p := range []string{"libc6", "libcrypt1", "perl-base", "init-system-helpers"} {
		debs = append(debs, nstest.FetchDeb(t, p))
	}
	hostStatus, hostLog := fileSum("/var/lib/dpkg/status"), fileSum("/var/log/dpkg.log")
	root := filepath.Join(nstest.TempDir(t), "root")
	r := nstest.Run(t, `
R=$ROOT
mkdir -p $R/bin $R/dev $R/etc $R/tmp $R/run $R/var/log $R/var/lib/dpkg/info $R/var/lib/dpkg/updates $R/var/lib/dpkg/triggers
for d in $DEBS; do dpkg-deb --extract $d $R; done
cp $BUSYBOX $R/bin/busybox
for a in $($R/bin/busybox --list); do
  [ -e $R/bin/$a ] || [ -e $R/usr/bin/$a ] || [ -e $R/sbin/$a ] || [ -e $R/usr/sbin/$a ] || ln -s busybox $R/bin/$a
done
: > $R/var/lib/dpkg/status; : > $R/var/lib/dpkg/available
mount --rbind /dev $R/dev
D="dpkg --root=$R --log=$R/var/log/dpkg.log"
$D --install $DEB
$D --audit && echo AUDIT-CLEAN
dpkg-query --admindir=$R/var/lib/dpkg -W -f='${Status} ${Version}\n' ovpkg
dpkg-query --admindir=$R/var/lib/dpkg -L ovpkg | sort > $R/tmp/listed
grep -x /usr/sbin/ovpkg $R/tmp/listed && grep -x /etc/init.d/ovmount $R/tmp/listed
# What the maintainer scripts did, with Debian's own helpers.
readlink $R/etc/systemd/system/sysinit.target.wants/ovmount.service
ls $R/etc/rcS.d/ $R/etc/rc0.d/ $R/etc/rc6.d/ $R/etc/rc2.d/
# systemd's own check of the units as installed (keys, ordering, commands),
# with systemd's targets copied in from the host.
cp /lib/systemd/system/*.target $R/lib/systemd/system/
systemd-analyze verify --root=$R --man=no ovmount.service && echo UNIT-VERIFIED
systemd-analyze verify --root=$R --man=no ovpkg-subhost@x.service && echo TEMPLATE-VERIFIED
systemd-analyze verify --root=$R --man=no ovpkg-boot-ok.service && echo BOOTOK-VERIFIED
readlink $R/etc/systemd/system/multi-user.target.wants/ovpkg-boot-ok.service
# The installed copy runs; with no configuration the boot paths do nothing.
chroot $R /usr/sbin/ovpkg --version
chroot $R /usr/sbin/ovmount --boot && echo BOOT-NOTHING-CONFIGURED
chroot $R /etc/init.d/ovmount start && echo SYSV-START-OK
chroot $R /etc/init.d/ovmount stop && echo SYSV-STOP-OK
$D --remove ovpkg
test -e $R/usr/sbin/ovpkg || echo BINARY-GONE
test -e $R/etc/init.d/ovmount && echo CONFFILE-KEPT
readlink $R/etc/systemd/system/ovmount.service
$D --purge ovpkg
test -e $R/etc/init.d/ovmount || echo CONFFILE-PURGED
ls $R/etc/rcS.d/ | grep ovmount || echo RC-LINKS-GONE
test -e $R/etc/systemd/system/sysinit.target.wants/ovmount.service || echo UNIT-DISABLED
test -e $R/etc/systemd/system/multi-user.target.wants/ovpkg-boot-ok.service || echo BOOTOK-DISABLED
dpkg-query --admindir=$R/var/lib/dpkg -W ovpkg 2>&1 || true
$D --audit && echo AUDIT-CLEAN-END
`, "ROOT="+root, "DEBS="+strings.Join(debs, " "), "BUSYBOX="+busybox, "DEB="+deb)
	t.Logf("%s", r)
	for _, s := range []string{"AUDIT-CLEAN\n", "install ok installed " + version, "/usr/sbin/ovpkg\n/etc/init.d/ovmount",
		"/lib/systemd/system/ovmount.service", "UNIT-VERIFIED", "TEMPLATE-VERIFIED", "BOOTOK-VERIFIED", "/lib/systemd/system/ovpkg-boot-ok.service\n", "BOOTOK-DISABLED", "S01ovmount", "S01overlay-boot", "K01ovmount", "ovpkg version",
		"nothing to mount", "BOOT-NOTHING-CONFIGURED", "SYSV-START-OK", "SYSV-STOP-OK", "BINARY-GONE", "CONFFILE-KEPT", "/dev/null",
		"CONFFILE-PURGED", "RC-LINKS-GONE", "UNIT-DISABLED", "AUDIT-CLEAN-END"} {
		if !strings.Contains(r.Stdout, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if r.Code != 0 {
		t.Fatalf("exit %d", r.Code)
	}
	if fileSum("/var/lib/dpkg/status") != hostStatus || fileSum("/var/log/dpkg.log") != hostLog {
		t.Errorf("the host's dpkg status or log changed")
	}
}

// TestMakeInstallSameFiles: `make install` (in a copy of the tree) puts
// the same files where the .deb does, with the same contents; the .deb
// adds /usr/share/doc, and make install links eject (and its man page)
// where the system has no eject of its own.
func TestMakeInstallSameFiles(t *testing.T) {
	nstest.Need(t, "make", "git", "dpkg-deb")
	deb := build(t, "deb")
	debDir := t.TempDir()
	output(t, "dpkg-deb", "--extract", deb, debDir)
	src := filepath.Join(t.TempDir(), "src")
	root := nstest.ModuleRoot()
	files, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		nstest.Skip(t, "not a git checkout: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(root, f))
		os.MkdirAll(filepath.Dir(filepath.Join(src, f)), 0o755)
		if err := os.WriteFile(filepath.Join(src, f), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	dest := t.TempDir()
	cmd := exec.Command("make", "install", "DESTDIR="+dest, "PREFIX=/usr", "SYSTEMDUNITDIR=/lib/systemd/system")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	list := func(dir string) map[string]string {
		m := map[string]string{}
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			rel := strings.TrimPrefix(p, dir)
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				m[rel] = "-> " + l
			case strings.HasSuffix(rel, ".gz"): // the .deb compresses man pages
				m[strings.TrimSuffix(rel, ".gz")] = sum(t, "gzip", "-dc", p) + " exec=false"
			default:
				m[rel] = fmt.Sprintf("%s exec=%v", sum(t, "cat", p), fi.Mode()&0o111 != 0)
			}
			return nil
		})
		return m
	}
	d, m := list(debDir), list(dest)
	for k := range d {
		if strings.HasPrefix(k, "/usr/share/doc/") {
			delete(d, k)
		}
	}
	for _, k := range []string{"/usr/sbin/eject", "/usr/share/man/man8/eject.8"} {
		delete(m, k)
	}
	delete(d, "/usr/sbin/ovpkg") // built twice: compared by presence
	if _, ok := m["/usr/sbin/ovpkg"]; !ok {
		t.Error("make install: no /usr/sbin/ovpkg")
	}
	delete(m, "/usr/sbin/ovpkg")
	var diff []string
	for k, v := range d {
		if m[k] != v {
			diff = append(diff, fmt.Sprintf("%s: deb %q, make install %q", k, v, m[k]))
		}
	}
	for k, v := range m {
		if _, ok := d[k]; !ok {
			diff = append(diff, fmt.Sprintf("%s: only make install (%s)", k, v))
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Errorf("make install and the .deb differ:\n%s", strings.Join(diff, "\n"))
	}
}

func sum(t testing.TB, argv ...string) string {
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	s := sha256.Sum256(out)
	return hex.EncodeToString(s[:])
}
