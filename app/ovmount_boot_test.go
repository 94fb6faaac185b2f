package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ovmount --boot: nothing configured is success; an image that does not
// appear is a clear failure once the wait is over, and nothing is mounted
// (the wait comes before any of ovmount's work).
func TestOvmountBoot(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ovpkg.conf")
	code, out, errs := run("ovmount", "--boot", "--config", conf)
	if code != 0 || !strings.Contains(out, "no card configured, nothing to mount") {
		t.Fatalf("no config: %d %q %q", code, out, errs)
	}
	os.WriteFile(conf, []byte("# nothing yet\nMOUNTPOINT=/overlay\n"), 0o644)
	code, out, errs = run("ovmount", "--boot", "--config", conf)
	if code != 0 || !strings.Contains(out, "names no card (SD_ROOTFS is not set)") {
		t.Fatalf("no SD_ROOTFS: %d %q %q", code, out, errs)
	}
	old := bootWait
	bootWait = 300 * time.Millisecond
	defer func() { bootWait = old }()
	img := filepath.Join(dir, "card", "card.img")
	os.WriteFile(conf, []byte("SD_ROOTFS="+img+"\n"), 0o644)
	start := time.Now()
	code, out, errs = run("ovmount", "--boot", "--config", conf)
	if code != 1 || !strings.Contains(errs, img+" (SD_ROOTFS in "+conf+") did not appear within 300ms") ||
		!strings.Contains(out, "waiting up to 300ms for "+img) || time.Since(start) < bootWait {
		t.Fatalf("missing image: %d %q %q", code, out, errs)
	}
	// Without --boot nothing waits and nothing is skipped.
	os.Remove(conf)
	if code, _, _ := run("ovmount", "--config", conf); code == 0 {
		t.Fatal("ovmount without --boot and without a config succeeded")
	}
}
