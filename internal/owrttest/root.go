package owrttest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// DefaultOpkgConf is OpenWrt's /etc/opkg.conf (22.03-24.10) without
// `option check_signature`: the tests' feeds are not signed (OpenWrt
// signs with usign, which is not here). Feeds go in
// /etc/opkg/customfeeds.conf, as on OpenWrt.
const DefaultOpkgConf = `dest root /
dest ram /tmp
lists_dir ext /var/opkg-lists
option overlay_root /overlay
`

// Options say what goes into a root besides busybox.
type Options struct {
	Opkg bool // the static opkg as /bin/opkg, its database in /usr/lib/opkg, /etc/opkg.conf
	Apk  bool // the static apk as /usr/bin/apk (its database is the caller's)
	// OpkgConf replaces DefaultOpkgConf.
	OpkgConf string
	// NoOvpkg leaves ovpkg out (a root for the package manager alone).
	NoOvpkg bool
	// Busybox is the busybox binary (default: Debian's busybox-static
	// for the host's architecture, unpacked into the test cache).
	Busybox string
	// OvpkgBin is the directory holding the ovpkg binary to install
	// (default nstest.Bin: the test build).
	OvpkgBin string
	// Opkg binary to install instead of the one built from pm-src (a
	// cross build).
	OpkgBin string
}

// BaseStatus is the opkg status of the root before any test installs:
// what ovpkg must leave byte-identical.
const BaseStatus = `Package: libc
Version: 1.2.5-r4
Status: install user installed
Architecture: all
Installed-Time: 1700000000

Package: busybox
Version: 1.36.1-r2
Depends: libc
Status: install user installed
Architecture: all
Conffiles:
 /etc/busybox.conf 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
Installed-Time: 1700000000

Package: base-files
Version: 1560-r1
Depends: libc
Status: install user installed
Architecture: all
Installed-Time: 1700000000

`

// Root is an OpenWrt-like root directory.
type Root struct {
	Dir string
	PM  PM // the package managers' build (zero without Opkg/Apk)
}

// NewRoot makes an OpenWrt-like root in a fresh test directory (checked
// for leaked loop devices and mounts at the end): busybox as the only
// userland (`busybox --list-full` links, no bash, util-linux, e2fsprogs
// or dpkg), /var a link to /tmp as on OpenWrt, the static opkg/apk and
// ovpkg (mkoverlay, ovmount, uovmount, eject) in /usr/sbin.
func NewRoot(t testing.TB, o Options) *Root {
	t.Helper()
	nstest.RequireRoot(t)
	r := &Root{Dir: filepath.Join(nstest.TempDir(t), "root")}
	if o.Opkg || o.Apk {
		if !(o.OpkgBin != "" && !o.Apk) {
			r.PM = BuildPM(t)
		}
	}
	bb := o.Busybox
	if bb == "" {
		bb = filepath.Join(nstest.ExtractDeb(t, "busybox-static"), "bin", "busybox")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("building the OpenWrt root: %v", err)
		}
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "lib", "etc", "tmp", "dev", "proc", "sys", "run", "mnt", "root", "overlay", "www"} {
		must(os.MkdirAll(filepath.Join(r.Dir, d), 0o755))
	}
	must(os.Chmod(filepath.Join(r.Dir, "tmp"), 0o1777))
	must(os.Symlink("tmp", filepath.Join(r.Dir, "var")))
	must(copyFile(bb, filepath.Join(r.Dir, "bin", "busybox"), 0o755))
	must(r.busyboxLinks(bb))
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/ash\ndaemon:*:1:1:daemon:/var:/bin/false\nnobody:*:65534:65534:nobody:/var:/bin/false\n",
		"etc/group":      "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n",
		"etc/shadow":     "root:::0:99999:7:::\n",
		"etc/os-release": "NAME=\"OpenWrt\"\nID=\"openwrt\"\nVERSION=\"24.10-ovpkg-test\"\n",
		"etc/hostname":   "OpenWrt\n",
		"etc/profile":    "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n",
	}
	if o.Opkg {
		conf := o.OpkgConf
		if conf == "" {
			conf = DefaultOpkgConf
		}
		files["etc/opkg.conf"] = conf
		files["etc/opkg/customfeeds.conf"] = "# add your custom package feeds here\n"
		files["usr/lib/opkg/status"] = BaseStatus
		files["usr/lib/opkg/info/busybox.control"] = "Package: busybox\nVersion: 1.36.1-r2\nDepends: libc\nArchitecture: all\n"
		files["usr/lib/opkg/info/busybox.list"] = "/bin/busybox\n"
		files["usr/lib/opkg/info/busybox.conffiles"] = "/etc/busybox.conf\n"
		files["etc/busybox.conf"] = "# busybox's own conffile, part of the base\n"
		files["usr/lib/opkg/info/libc.control"] = "Package: libc\nVersion: 1.2.5-r4\nArchitecture: all\n"
		files["usr/lib/opkg/info/libc.list"] = ""
		files["usr/lib/opkg/info/base-files.control"] = "Package: base-files\nVersion: 1560-r1\nDepends: libc\nArchitecture: all\n"
		files["usr/lib/opkg/info/base-files.list"] = "/etc/passwd\n/etc/group\n/etc/profile\n/etc/os-release\n"
		opkg := o.OpkgBin
		if opkg == "" {
			opkg = r.PM.Opkg
		}
		must(copyFile(opkg, filepath.Join(r.Dir, "bin", "opkg"), 0o755))
	}
	if o.Apk {
		must(copyFile(r.PM.Apk, filepath.Join(r.Dir, "usr", "bin", "apk"), 0o755))
		must(os.MkdirAll(filepath.Join(r.Dir, "etc", "apk"), 0o755))
	}
	for p, c := range files {
		must(os.MkdirAll(filepath.Dir(filepath.Join(r.Dir, p)), 0o755))
		must(os.WriteFile(filepath.Join(r.Dir, p), []byte(c), 0o644))
	}
	if !o.NoOvpkg {
		bin := o.OvpkgBin
		if bin == "" {
			bin = nstest.Bin(t)
		}
		must(copyFile(filepath.Join(bin, "ovpkg"), filepath.Join(r.Dir, "usr", "sbin", "ovpkg"), 0o755))
		for _, n := range nstest.Tools[1:] {
			p := filepath.Join(r.Dir, "usr", "sbin", n)
			if _, err := os.Lstat(p); err == nil {
				continue // a busybox applet of that name: `ovpkg NAME` still works
			}
			must(os.Symlink("ovpkg", p))
		}
	}
	return r
}

// Omitted are Debian's busybox applets that OpenWrt's busybox does not
// have and that would stand in for the tools ovpkg must not need:
// dpkg (its presence is how ovpkg detects apt), e2fsprogs' and
// util-linux's partition and file system tools.
var Omitted = map[string]bool{"dpkg": true, "dpkg-deb": true, "rpm": true, "rpm2cpio": true,
	"mke2fs": true, "fdisk": true, "partprobe": true, "blockdev": true, "findfs": true, "mkdosfs": true, "mkswap": true}

// busyboxLinks makes a symbolic link to /bin/busybox for every applet
// (`busybox --list-full`), as `busybox --install -s` does on a device.
func (r *Root) busyboxLinks(bb string) error {
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", bb, err)
	}
	for _, a := range strings.Fields(string(out)) {
		a = strings.Trim(filepath.Clean("/"+a), "/")
		if a == "bin/busybox" || strings.Contains(a, "..") || Omitted[filepath.Base(a)] {
			continue
		}
		p := filepath.Join(r.Dir, a)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", p); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// Feed builds the packages into the root's /feeds/NAME with a
// Packages.gz and adds `src/gz NAME file:///feeds/NAME` to
// /etc/opkg/customfeeds.conf. It returns the feed's directory (on the
// host). Calling it again with the same name adds packages (an upgrade)
// and rewrites the index.
func (r *Root) Feed(t testing.TB, name string, pkgs ...Ipk) string {
	t.Helper()
	dir := filepath.Join(r.Dir, "feeds", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		BuildIpk(t, dir, p)
	}
	if err := WriteFeed(dir); err != nil {
		t.Fatalf("feed %s: %v", name, err)
	}
	conf := filepath.Join(r.Dir, "etc", "opkg", "customfeeds.conf")
	line := fmt.Sprintf("src/gz %s file:///feeds/%s\n", name, name)
	b, _ := os.ReadFile(conf)
	if !strings.Contains(string(b), line) {
		if err := os.WriteFile(conf, append(b, line...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Setup is the host-side (bash) part of Run: it turns the root into a
// mount point (bind-mounted on itself: Go's CLONE_NEWNS inside the
// chroot then works, as on a device), mounts /proc, /sys, /dev (a
// recursive bind of the host's: loop devices), a tmpfs on /run and one on
// /tmp (with /tmp/lock and /tmp/run, as OpenWrt's boot makes them), all in
// the test's private mount namespace.
const Setup = `R=$OWRT_ROOT
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755,size=16m run "$R/run"
mount -t tmpfs -o mode=1777 tmp "$R/tmp"
mkdir -p "$R/tmp/lock" "$R/tmp/run" "$R/tmp/opkg-lists"
`

// ShellPrelude starts every script run inside the root (busybox ash).
const ShellPrelude = "set -eu\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root\ncd /\n"

// Run runs script with the root's busybox sh inside the root (see
// Setup), with a clean environment (PATH, HOME, TERM, LC_ALL=C and env,
// "NAME=value" each). The host runs nothing but the mounts and chroot.
// Each Run is a fresh namespace: mounts made by a script end with it.
func (r *Root) Run(t testing.TB, script string, env ...string) nstest.Result {
	t.Helper()
	return r.RunTimeout(t, 10*time.Minute, script, env...)
}

// RunTimeout is Run with a time limit.
func (r *Root) RunTimeout(t testing.TB, limit time.Duration, script string, env ...string) nstest.Result {
	t.Helper()
	args := []string{"chroot", `"$R"`, "/bin/busybox", "env", "-i", "TERM=dumb", "LC_ALL=C", "HOME=/root", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, e := range env {
		args = append(args, shq(e))
	}
	args = append(args, "/bin/sh", "-c", `"$OWRT_SCRIPT"`)
	return nstest.RunTimeout(t, limit, Setup+"exec "+strings.Join(args, " ")+"\n",
		"OWRT_ROOT="+r.Dir, "OWRT_SCRIPT="+ShellPrelude+script)
}

// MustRun is Run that fails the test on a non-zero exit.
func (r *Root) MustRun(t testing.TB, script string, env ...string) nstest.Result {
	t.Helper()
	res := r.Run(t, script, env...)
	if res.Code != 0 {
		t.Fatalf("script in the OpenWrt root failed: %s\nscript:\n%s", res, script)
	}
	return res
}

// shq quotes s for bash.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
