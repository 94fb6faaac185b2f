package nstest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tools are the names the multi-call binary answers to; Bin links each.
var Tools = []string{"ovpkg", "mkoverlay", "ovmount", "uovmount", "eject", "overlay-boot", "overlay-go", "overlay-stop"}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// ModuleRoot returns the repository root (the directory holding go.mod).
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// TestTags are the build tags of the binary the tests run: the product's
// plus ovpkg_testhooks (fault points and test verbs, see internal/faults).
const TestTags = "ovpkg_testhooks"

// Bin builds the multi-call binary (CGO_ENABLED=0, as shipped, plus the
// test hooks) once per test process and returns the directory holding it
// and a link for every tool name. Set OVPKG_TEST_BIN to use an already
// built directory (`make test` builds bin-test/ with TestTags).
func Bin(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("OVPKG_TEST_BIN"); d != "" {
		checkTestBuild(t, d)
		return d
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ovpkg-testbin-")
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-tags", TestTags, "-o", filepath.Join(dir, "ovpkg"), "./cmd/ovpkg")
		cmd.Dir = ModuleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		for _, n := range Tools[1:] {
			if err := os.Symlink("ovpkg", filepath.Join(dir, n)); err != nil {
				buildErr = err
				return
			}
		}
		buildDir = dir
	})
	if buildErr != nil {
		t.Fatalf("building the suite: %v", buildErr)
	}
	return buildDir
}

var (
	checkedOnce sync.Once
	checkedErr  error
)

// checkTestBuild makes sure OVPKG_TEST_BIN holds a build with the test
// hooks: the e2e tests drive fault points (OVPKG_TEST_CRASH_AT,
// OVPKG_TEST_FAIL_AT) that a product build ignores, so against one they
// would fail for the wrong reason, or pass without testing anything.
func checkTestBuild(t testing.TB, dir string) {
	t.Helper()
	checkedOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join(dir, "ovpkg"))
		if err != nil {
			checkedErr = err
			return
		}
		if !bytes.Contains(b, []byte("OVPKG_TEST_FAIL_AT")) {
			checkedErr = fmt.Errorf("OVPKG_TEST_BIN=%s is not a test build: build it with -tags %q (make build-test)", dir, TestTags)
		}
	})
	if checkedErr != nil {
		t.Fatal(checkedErr)
	}
}

// CI reports whether the tests run under CI ($CI set and not "false"),
// where a test that cannot run is a failure, not a skip.
func CI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Skip skips the test with the reason, or fails it when CI is set: under
// CI a missing tool, root or network is a broken test bed, not a pass.
func Skip(t testing.TB, format string, a ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, a...)
	if CI() {
		t.Fatalf("cannot run under CI: %s", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips the test with a clear message unless running as root
// (fails under CI).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (loop devices and mounts); run `make test` as root, as CI does")
	}
}

// Need skips the test when one of the programs it uses to verify is
// missing (make test installs them); fails under CI.
func Need(t testing.TB, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			Skip(t, "needs %s (run `make test-deps`)", p)
		}
	}
}

// Result is what a script printed and how it ended.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.Code, r.Stdout, r.Stderr)
}

// Prelude runs first in every script: strict mode, and a private tmpfs
// over /run/ovpkg so mount records and locks of parallel tests never meet.
// The host's memory of cards (the trust package) goes into it too, never
// into this machine's /var/lib/ovpkg (test builds read
// OVPKG_TEST_TRUST_DIR when the config has no TRUST_DIR).
const Prelude = `set -euo pipefail
mkdir -p /run/ovpkg
mount -t tmpfs -o mode=0700,size=4m ovpkg-test /run/ovpkg
export OVPKG_TEST_TRUST_DIR=/run/ovpkg/trust
`

// Env is extra environment for Run.
type Env []string

// Run executes script with bash inside a new private mount namespace,
// with the suite's bin directory first in PATH, and returns its result.
// It never fails the test by itself: callers assert on Result.
func Run(t testing.TB, script string, env ...string) Result {
	t.Helper()
	return RunTimeout(t, 5*time.Minute, script, env...)
}

// RunTimeout is Run with a time limit (the namespace's processes are
// killed when it passes).
func RunTimeout(t testing.TB, limit time.Duration, script string, env ...string) Result {
	t.Helper()
	RequireRoot(t)
	bin := Bin(t)
	cmd := exec.Command("/bin/bash", "-c", Prelude+script)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "LC_ALL=C")
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Unshareflags: syscall.CLONE_NEWNS,
		Setpgid:      true,
		Pdeathsig:    syscall.SIGKILL,
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting namespaced script: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(limit):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
		t.Errorf("script timed out after %v", limit)
	}
	r := Result{Stdout: so.String(), Stderr: se.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running namespaced script: %v", err)
	}
	return r
}

// MustRun is Run that fails the test on a non-zero exit.
func MustRun(t testing.TB, script string, env ...string) Result {
	t.Helper()
	r := Run(t, script, env...)
	if r.Code != 0 {
		t.Fatalf("script failed: %s\nscript:\n%s", r, script)
	}
	return r
}

// TempDir returns a test directory and registers a cleanup that fails the
// test if a loop device backed by a file under it, or a host mount under
// it, is still there when the test ends (the namespace is gone by then,
// so anything left is a real leak). Use it instead of t.TempDir for card
// images.
func TempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { CheckNoLeaks(t, dir) })
	return dir
}

// CheckNoLeaks fails t if a loop device is backed by a file under dir or a
// mount point of this (host) namespace lies under dir. Loop devices with
// autoclear go away a moment after their last mount does, so it polls
// briefly before calling a loop device leaked.
func CheckNoLeaks(t testing.TB, dir string) {
	t.Helper()
	var loops []string
	for i := 0; i < 40; i++ {
		loops = LoopsUnder(dir)
		if len(loops) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(loops) > 0 {
		t.Errorf("leaked loop devices backed by files under %s: %s", dir, strings.Join(loops, ", "))
	}
	if m := MountsUnder("/proc/self/mountinfo", dir); len(m) > 0 {
		t.Errorf("leaked host mounts under %s: %s", dir, strings.Join(m, ", "))
	}
}

// LoopsUnder lists loop devices (as "/dev/loopN=backing") whose backing
// file lies under dir, read from sysfs.
func LoopsUnder(dir string) []string {
	var out []string
	devs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range devs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		back := strings.TrimSpace(string(b))
		if back == dir || strings.HasPrefix(back, dir+"/") {
			dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
			out = append(out, dev+"="+back)
		}
	}
	return out
}

// MountsUnder lists mount points in a mountinfo file that lie under dir.
func MountsUnder(mountinfo, dir string) []string {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := unescape(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// JSON decodes s into v or fails the test.
func JSON(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("bad JSON (%v): %s", err, s)
	}
}
