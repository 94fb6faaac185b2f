package pkgmgr

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpkgConfCardDest(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/opkg"), 0o755)
	os.MkdirAll(filepath.Join(root, "overlay/ovpkg"), 0o755)
	os.WriteFile(filepath.Join(root, "overlay/ovpkg/FORMAT"), []byte("ovpkg-card 1\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/opkg.conf"), []byte("dest root /\ndest ram /tmp\nlists_dir ext \"/var/opkg-lists\"\noption overlay_root /overlay\n# a comment\ndest card /overlay\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/opkg/customfeeds.conf"), []byte("src/gz local file:///feeds/local\n"), 0o644)
	c, err := ReadOpkgConf(root)
	if err != nil {
		t.Fatal(err)
	}
	if c.ListsDir != "/var/opkg-lists" || c.OverlayRoot != "/overlay" || len(c.Dests) != 3 || len(c.Files) != 2 {
		t.Fatalf("%+v", c)
	}
	cd := c.CardDests(root)
	if len(cd) != 1 || cd[0].Name != "card" || cd[0].Line != 6 {
		t.Fatalf("card dests %+v", cd)
	}
	o := NewOpkg(root, nil)
	pre, note, err := o.opkgPrefix()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pre) != "[opkg -f /"+OpkgRunConfDir+"/opkg.conf]" || !strings.Contains(note, "/etc/opkg.conf:6") {
		t.Errorf("prefix %q note %q", pre, note)
	}
	b, _ := os.ReadFile(filepath.Join(root, OpkgRunConfDir, "opkg.conf"))
	if !strings.Contains(string(b), "# left out by ovpkg (the card is reached through the overlays): dest card /overlay") ||
		!strings.Contains(string(b), "dest ram /tmp") {
		t.Errorf("filtered conf:\n%s", b)
	}
	// In /etc/opkg/*.conf too: opkg then reads filtered copies of those.
	os.WriteFile(filepath.Join(root, "etc/opkg/card.conf"), []byte("dest sd /overlay/sub\n"), 0o644)
	pre, _, _ = o.opkgPrefix()
	if fmt.Sprint(pre) != "[env OPKG_CONF_DIR=/"+OpkgRunConfDir+"/conf.d opkg -f /"+OpkgRunConfDir+"/opkg.conf]" {
		t.Errorf("prefix %q", pre)
	}
	if b, _ := os.ReadFile(filepath.Join(root, OpkgRunConfDir, "conf.d/customfeeds.conf")); string(b) != "src/gz local file:///feeds/local\n" {
		t.Errorf("customfeeds copy %q", b)
	}
	// Without the card layout the line is an ordinary destination.
	os.Remove(filepath.Join(root, "overlay/ovpkg/FORMAT"))
	if pre, note, _ := o.opkgPrefix(); fmt.Sprint(pre) != "[opkg]" || note != "" {
		t.Errorf("no card: %q %q", pre, note)
	}
}

func TestOpkgCheckTools(t *testing.T) {
	root := t.TempDir()
	o := NewOpkg(root, nil)
	if err := o.CheckTools(); err == nil || !strings.Contains(err.Error(), "opkg needs gzip on PATH") {
		t.Errorf("no gzip: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.WriteFile(filepath.Join(root, "bin/gzip"), []byte("#!/bin/sh\n"), 0o755)
	if err := o.CheckTools(); err == nil || !strings.Contains(err.Error(), "/var/lock") {
		t.Errorf("no /var/lock: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "tmp/lock"), 0o755)
	os.Symlink("tmp", filepath.Join(root, "var")) // OpenWrt's /var -> /tmp
	if err := o.CheckTools(); err != nil {
		t.Error(err)
	}
}

func TestCollectedLines(t *testing.T) {
	var r readOnlyWatch
	for _, l := range []string{"Installing x", "Collected errors:", " * resolve_conffiles: Existing conffile /etc/x is different",
		" * opkg_configure: y.", "", "Installing z", " * not collected"} {
		r.see(l)
	}
	if fmt.Sprint(r.collected) != "[resolve_conffiles: Existing conffile /etc/x is different opkg_configure: y.]" {
		t.Errorf("collected %q", r.collected)
	}
}

func TestNewlyBroken(t *testing.T) {
	before := []Package{{Name: "a", Version: "1", State: "unpacked"}, {Name: "b", Version: "1", State: "installed"}}
	after := []Package{{Name: "a", Version: "1", State: "unpacked"}, {Name: "b", Version: "2", State: "unpacked"}, {Name: "c", Version: "1", State: "installed"}}
	if got := NewlyBroken(before, after); len(got) != 1 || got[0].Name != "b" {
		t.Errorf("%+v", got)
	}
}
