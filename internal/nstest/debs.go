package nstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// FetchDeb returns the path of Debian package pkg's .deb (for the host's
// architecture, the version apt would install), downloaded once into the
// test cache ("debs") with apt-get download. It never installs anything.
// Without the archive it skips (fails under CI).
func FetchDeb(t testing.TB, pkg string) string {
	t.Helper()
	Need(t, "apt-get", "apt-cache")
	dir := CacheDir(t, "debs")
	out, err := exec.Command("apt-cache", "policy", pkg).Output()
	ver := ""
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Candidate:" && f[1] != "(none)" {
			ver = f[1]
		}
	}
	if err != nil || ver == "" {
		Skip(t, "Debian package %s has no candidate in the apt lists (run apt-get update): %v", pkg, err)
	}
	// apt names archives name_<epoch>%3a<version>_<arch>.deb.
	want := pkg + "_" + strings.ReplaceAll(ver, ":", "%3a") + "_"
	find := func() string {
		m, _ := filepath.Glob(filepath.Join(dir, want+"*.deb"))
		if len(m) > 0 {
			return m[0]
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	unlock := Lock(t, dir)
	defer unlock()
	if p := find(); p != "" {
		return p
	}
	cmd := exec.Command("apt-get", "download", "-q", pkg+"="+ver)
	cmd.Dir = dir
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Run(); err != nil {
		Skip(t, "downloading %s=%s from the archive: %v: %s", pkg, ver, err, strings.TrimSpace(se.String()))
	}
	if p := find(); p != "" {
		return p
	}
	t.Fatalf("apt-get download %s=%s left no %s*.deb in %s", pkg, ver, want, dir)
	return ""
}

// ExtractDeb unpacks the data of a .deb (dpkg-deb -x) into the test cache
// once and returns the directory, for test roots built from Debian's
// packages without installing them (busybox-static, the kernel).
func ExtractDeb(t testing.TB, pkg string) string {
	t.Helper()
	Need(t, "dpkg-deb")
	deb := FetchDeb(t, pkg)
	name := strings.TrimSuffix(filepath.Base(deb), ".deb")
	return Cached(t, CacheDir(t, "unpacked"), name, func(tmp string) error {
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return err
		}
		if out, err := exec.Command("dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, out)
		}
		return nil
	})
}
