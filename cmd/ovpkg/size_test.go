package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SizeBudget is the most the stripped, static mipsle (softfloat) build of
// the whole suite may weigh: the devices it is for have small flash.
const SizeBudget = 6_000_000

// TestMipsleSize builds the product for mipsle as `make cross` does and
// fails when it is over budget.
func TestMipsleSize(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "ovpkg")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", exe, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for mipsle: %v\n%s", err, out)
	}
	fi, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mipsle stripped: %d bytes (budget %d)", fi.Size(), SizeBudget)
	if fi.Size() > SizeBudget {
		t.Errorf("the mipsle build is %d bytes, over the %d-byte budget by %d: weigh the last dependency or feature added", fi.Size(), SizeBudget, fi.Size()-SizeBudget)
	}
}
