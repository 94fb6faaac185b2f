package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// TestProductHasNoTestHooks checks the shipped binary (built as `make
// build` builds it, without the ovpkg_testhooks tag) carries none of the
// fault points or test verbs: their names must not be in it at all.
func TestProductHasNoTestHooks(t *testing.T) {
	bin := os.Getenv("OVPKG_PRODUCT_BIN")
	var exe string
	if bin != "" {
		exe = filepath.Join(bin, "ovpkg")
	} else {
		exe = filepath.Join(t.TempDir(), "ovpkg")
		cmd := exec.Command("go", "build", "-trimpath", "-o", exe, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	// Fault points and test settings (OVPKG_TEST_*), test verbs, test-only
	// flags, and the names of fault steps (dead code in the product).
	for _, s := range []string{"OVPKG_TEST_", "__txn-test", "ovpkg_testhooks", "no-space-check", "REPORT_RSS", "LAYER_LIMIT",
		"attach-intruder", "undo-card-unmount", "eject-flush", "mark-unflushed"} {
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("%s contains %q: test hooks must stay behind the ovpkg_testhooks tag", exe, s)
		}
	}
	// The test build must have them, or this test proves nothing.
	test := filepath.Join(nstest.Bin(t), "ovpkg")
	td, err := os.ReadFile(test)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(td, []byte("OVPKG_TEST_CRASH_AT")) || !bytes.Contains(td, []byte("no-space-check")) {
		t.Errorf("the test build %s lacks the fault points: is it built with -tags %q?", test, nstest.TestTags)
	}
}
