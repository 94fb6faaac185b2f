// Package debtest builds small Debian packages for tests with dpkg-deb:
// a program under /usr/bin, dependencies, a postinst that writes a file,
// conffiles under /etc, and payloads too large for a small card.
//
// It owns nothing outside tests; it never installs anything.
package debtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// File is one file in a package.
type File struct {
	Data string
	Mode os.FileMode // 0: 0644
	Size int64       // when set, the file is Size zero bytes (Data ignored)
}

// Spec describes a package.
type Spec struct {
	Name, Version string // Version default "1.0"
	Arch          string // default "all"
	Depends       string
	Files         map[string]File // "usr/bin/foo" -> content
	Conffiles     []string        // "/etc/foo.conf" (must be in Files)
	Postinst      string          // shell script body
	Prerm         string
	Postrm        string
}

// Program returns a File holding a shell script that prints msg.
func Program(msg string) File {
	return File{Data: "#!/bin/sh\necho '" + msg + "'\n", Mode: 0o755}
}

// Build writes NAME_VERSION_ARCH.deb into dir and returns its path.
func Build(t testing.TB, dir string, s Spec) string {
	t.Helper()
	p, err := BuildErr(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// BuildErr is Build returning its error (for benchmarks and helpers).
func BuildErr(dir string, s Spec) (string, error) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return "", fmt.Errorf("debtest: needs dpkg-deb: %w", err)
	}
	if s.Version == "" {
		s.Version = "1.0"
	}
	if s.Arch == "" {
		s.Arch = "all"
	}
	tree, err := os.MkdirTemp(dir, "debtree-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tree)
	if err := os.Chmod(tree, 0o755); err != nil { // MkdirTemp makes 0700: would be the package's "./"
		return "", err
	}
	var kib int64
	names := make([]string, 0, len(s.Files))
	for n := range s.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, n := range names {
		f := s.Files[n]
		p := filepath.Join(tree, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		for d := filepath.Dir(n); d != "." && d != "/"; d = filepath.Dir(d) {
			dirs[d] = true
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if f.Size > 0 {
			fh, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return "", err
			}
			buf := make([]byte, 1<<20)
			for left := f.Size; left > 0; {
				n := int64(len(buf))
				if left < n {
					n = left
				}
				if _, err := fh.Write(buf[:n]); err != nil {
					fh.Close()
					return "", err
				}
				left -= n
			}
			if err := fh.Close(); err != nil {
				return "", err
			}
			kib += (f.Size + 1023) / 1024
		} else {
			if err := os.WriteFile(p, []byte(f.Data), mode); err != nil {
				return "", err
			}
			kib += (int64(len(f.Data)) + 1023) / 1024
		}
		if err := os.Chmod(p, mode); err != nil {
			return "", err
		}
	}
	kib += int64(len(dirs))
	ctl := filepath.Join(tree, "DEBIAN")
	if err := os.MkdirAll(ctl, 0o755); err != nil {
		return "", err
	}
	var c strings.Builder
	fmt.Fprintf(&c, "Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: ovpkg tests <tests@ovpkg.invalid>\nInstalled-Size: %d\n", s.Name, s.Version, s.Arch, kib)
	if s.Depends != "" {
		fmt.Fprintf(&c, "Depends: %s\n", s.Depends)
	}
	fmt.Fprintf(&c, "Section: misc\nPriority: optional\nDescription: ovpkg test package %s\n built by pkgmgr/debtest\n", s.Name)
	if err := os.WriteFile(filepath.Join(ctl, "control"), []byte(c.String()), 0o644); err != nil {
		return "", err
	}
	if len(s.Conffiles) > 0 {
		if err := os.WriteFile(filepath.Join(ctl, "conffiles"), []byte(strings.Join(s.Conffiles, "\n")+"\n"), 0o644); err != nil {
			return "", err
		}
	}
	for name, body := range map[string]string{"postinst": s.Postinst, "prerm": s.Prerm, "postrm": s.Postrm} {
		if body == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(ctl, name), []byte("#!/bin/sh\nset -e\n"+body+"\n"), 0o755); err != nil {
			return "", err
		}
	}
	out := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", s.Name, s.Version, s.Arch))
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", tree, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb --build %s: %v\n%s", s.Name, err, b)
	}
	return out, nil
}

// Standard is the set of packages the end-to-end tests use. Names carry
// prefix so parallel tests do not meet.
type Standard struct {
	Lib, App, Daemon, Conf, Huge string // paths of the .deb files
}

// Names of the standard packages for a prefix.
func Names(prefix string) (lib, app, daemon, conf, huge string) {
	return prefix + "-lib", prefix + "-app", prefix + "-postinst", prefix + "-conf", prefix + "-huge"
}

// BuildStandard builds, in dir: PREFIX-lib (a data file), PREFIX-app (a
// program /usr/bin/PREFIX-app depending on PREFIX-lib), PREFIX-postinst
// (a postinst writing /var/lib/PREFIX/postinst-ran), PREFIX-conf (a
// conffile /etc/PREFIX.conf) and PREFIX-huge (hugeBytes of zeros under
// /usr/share, too large for a small card).
func BuildStandard(t testing.TB, dir, prefix string, hugeBytes int64) Standard {
	t.Helper()
	lib, app, daemon, conf, huge := Names(prefix)
	return Standard{
		Lib: Build(t, dir, Spec{Name: lib, Files: map[string]File{
			"usr/share/" + lib + "/data": {Data: "library data of " + lib + "\n"},
		}}),
		App: Build(t, dir, Spec{Name: app, Depends: lib, Files: map[string]File{
			"usr/bin/" + app: Program("hello from " + app),
		}}),
		Daemon: Build(t, dir, Spec{Name: daemon, Files: map[string]File{
			"usr/share/doc/" + daemon + "/README": {Data: "postinst test\n"},
			// A service that, if started, would hold the card (cwd on /var).
			"etc/init.d/" + daemon: {Mode: 0o755, Data: "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: " + daemon +
				"\n# Required-Start:\n# Required-Stop:\n# Default-Start: 2 3 4 5\n# Default-Stop: 0 1 6\n# Short-Description: test\n### END INIT INFO\n" +
				"case \"$1\" in start) cd /var/lib/" + prefix + " && setsid sleep 3331 >/dev/null 2>&1 & echo started > /var/lib/" + prefix + "/service-started;; esac\nexit 0\n"},
		}, Postinst: "mkdir -p /var/lib/" + prefix + "\necho ran > /var/lib/" + prefix + "/postinst-ran\n" +
			"update-rc.d " + daemon + " defaults >/dev/null 2>&1 || true\n" +
			"invoke-rc.d " + daemon + " start || true",
			Postrm: "rm -rf /var/lib/" + prefix}),
		Conf: Build(t, dir, Spec{Name: conf, Files: map[string]File{
			"etc/" + prefix + ".conf": {Data: "setting=1\n"},
		}, Conffiles: []string{"/etc/" + prefix + ".conf"}}),
		Huge: Build(t, dir, Spec{Name: huge, Files: map[string]File{
			"usr/share/" + huge + "/blob": {Size: hugeBytes},
		}}),
	}
}
