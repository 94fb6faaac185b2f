package pkgmgr

import "testing"

// The hand-written readers of opkg's and apk's lines (they replaced
// regexps: docs/dependencies.md) accept what the tools print and nothing
// near it.
func TestOpkgApkLineReaders(t *testing.T) {
	for _, c := range []struct {
		line, name, ver string
		ok              bool
	}{
		{"Installing foo (1.2-3) to root...", "foo", "1.2-3", true},
		{"Installing libfoo1 (2:1.0~rc1-r2) to card...", "libfoo1", "2:1.0~rc1-r2", true},
		{"Installing foo (1.2-3) for root", "", "", false},
		{"Installing  (1.2-3) to root...", "", "", false},
		{"Installing foo 1.2-3 to root...", "", "", false},
		{"Downloading foo (1.2-3) to root...", "", "", false},
	} {
		n, v, ok := opkgInstalling(c.line)
		if n != c.name || v != c.ver || ok != c.ok {
			t.Errorf("opkgInstalling(%q) = %q %q %v", c.line, n, v, ok)
		}
	}
	for _, c := range []struct {
		line, name, old, ver string
		ok                   bool
	}{
		{"Upgrading foo on root from 1.0-1 to 1.1-1...", "foo", "1.0-1", "1.1-1", true},
		{"Upgrading foo on root from 1.0-1 to 1.1-1....", "foo", "1.0-1", "1.1-1", true},
		{"Upgrading foo on root from 1.0-1 to 1.1-1", "", "", "", false},
		{"Upgrading foo on root from 1.0-1 to ...", "", "", "", false},
		{"Upgrading foo from 1.0-1 to 1.1-1...", "", "", "", false},
	} {
		n, o, v, ok := opkgUpgrading(c.line)
		if n != c.name || o != c.old || v != c.ver || ok != c.ok {
			t.Errorf("opkgUpgrading(%q) = %q %q %q %v", c.line, n, o, v, ok)
		}
	}
	for _, c := range []struct {
		line, action, name, ver string
		ok                      bool
	}{
		{"(1/2) Installing foo (1.0-r1)", "Installing", "foo", "1.0-r1", true},
		{"( 3/12) Upgrading foo@edge (1.0-r1 -> 1.1-r0)", "Upgrading", "foo@edge", "1.0-r1 -> 1.1-r0", true},
		{"(1/1) Purging foo (1.0-r1)", "Purging", "foo", "1.0-r1", true},
		{"(2/2) [APK unavailable, skipped] Reinstalling foo (1)", "[APK unavailable, skipped] Reinstalling", "foo", "1", true},
		{"(1/1) Executing foo-1.0.post-install", "", "", "", false},
		{"(a/1) Installing foo (1.0-r1)", "", "", "", false},
		{"(1/1)Installing foo (1.0-r1)", "", "", "", false},
		{"(1/1) Installing foo (1.0-r1", "", "", "", false},
	} {
		a, n, v, ok := apkChange(c.line)
		if a != c.action || n != c.name || v != c.ver || ok != c.ok {
			t.Errorf("apkChange(%q) = %q %q %q %v", c.line, a, n, v, ok)
		}
	}
	if i, n, rest, ok := apkStep("( 3/12) Installing x (1)"); !ok || i != 3 || n != 12 || rest != "Installing x (1)" {
		t.Errorf("apkStep: %d %d %q %v", i, n, rest, ok)
	}
}
