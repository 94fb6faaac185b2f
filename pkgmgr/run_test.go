package pkgmgr

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CLONE_NEWPID)")
	}
}

// testInit runs this test binary as the namespace init (see TestMain).
func testInit() []string { return []string{os.Args[0], InitArg} }

func TestRunExitCodeAndOutput(t *testing.T) {
	needRoot(t)
	var out, errOut bytes.Buffer
	res, err := Run(context.Background(), []string{"sh", "-c", "grep NSpid /proc/self/status; echo 'write: No space left on device' >&2; exit 7"},
		RunOptions{Init: testInit(), Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader("")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 7 || !res.NoSpace {
		t.Fatalf("code %d nospace %v", res.Code, res.NoSpace)
	}
	// NSpid lists the PID in each namespace: two levels.
	if f := strings.Fields(strings.SplitN(out.String(), "\n", 2)[0]); len(f) != 3 {
		t.Errorf("not in a new PID namespace: %q", out.String())
	}
	if !errors.Is(res.Err(), unix.ENOSPC) {
		t.Errorf("Err() %v does not wrap ENOSPC", res.Err())
	}
}

func TestRunKillsSetsidDescendants(t *testing.T) {
	needRoot(t)
	marker := "4127"
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	res, err := Run(ctx, []string{"sh", "-c", "setsid sleep " + marker + " & sleep " + marker + "1"},
		RunOptions{Init: testInit(), Stdin: strings.NewReader("")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Interrupted == nil || !errors.Is(res.Err(), ErrInterrupted) {
		t.Fatalf("not marked interrupted: %+v", res)
	}
	time.Sleep(200 * time.Millisecond)
	out, _ := exec.Command("ps", "-eo", "args").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == "sleep "+marker {
			t.Fatal("a setsid'd grandchild survived the namespace")
		}
	}
}

func TestRunMissingProgram(t *testing.T) {
	needRoot(t)
	var errOut bytes.Buffer
	res, err := Run(context.Background(), []string{"no-such-package-manager"}, RunOptions{Init: testInit(), Stderr: &errOut, Stdin: strings.NewReader("")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 127 || !strings.Contains(errOut.String(), "not found") {
		t.Fatalf("code %d, %q", res.Code, errOut.String())
	}
}

func TestPlacePolicy(t *testing.T) {
	root := t.TempDir()
	if _, note := placePolicy(root); note == "" {
		t.Error("no usr/sbin: want a note")
	}
	os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755)
	undo, note := placePolicy(root)
	p := filepath.Join(root, PolicyPath)
	if note != "" {
		t.Fatal(note)
	}
	log := filepath.Join(root, "log")
	cmd := exec.Command(p, "--quiet", "food", "start", "2")
	cmd.Env = append(os.Environ(), EnvPolicyLog+"="+log)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 101 {
		t.Fatalf("policy-rc.d with ovpkg running: %v, want exit 101", err)
	}
	b, _ := os.ReadFile(log)
	if got := ParsePolicyLog(bytes.NewReader(b)); len(got) != 1 || got[0] != "food start" {
		t.Fatalf("log %q", b)
	}
	if err := exec.Command(p, "food", "start").Run(); err != nil {
		t.Fatalf("left-behind policy-rc.d must allow (exit 0): %v", err)
	}
	undo()
	if _, err := os.Stat(p); err == nil {
		t.Fatal("undo left the file")
	}
	os.WriteFile(p, []byte("#!/bin/sh\nexit 101\n"), 0o755)
	if _, note := placePolicy(root); !strings.Contains(note, "system's own") {
		t.Fatalf("foreign policy-rc.d: note %q", note)
	}
	RemoveStalePolicy(root)
	if _, err := os.Stat(p); err != nil {
		t.Fatal("RemoveStalePolicy removed a foreign file")
	}
}

// The gate: the "package manager" runs GateHook with what it hands over
// on stdin; Run's Gate sees it and its verdict decides the hook's exit.
func TestRunGate(t *testing.T) {
	needRoot(t)
	script := `printf 'VERSION 3\nconf=1\n\nsl - - none < 1 amd64 none /a/sl.deb\n' | sh -c "$HOOK"; echo "rc=$?"`
	for _, veto := range []bool{false, true} {
		var got []string
		var out bytes.Buffer
		res, err := Run(context.Background(), []string{"sh", "-c", script}, RunOptions{
			Init: testInit(), Stdout: &out, Stdin: strings.NewReader(""), Env: []string{"HOOK=" + GateHook},
			GateDir: t.TempDir(),
			Gate: func(in []string) error {
				got = in
				if veto {
					return errors.New("no room")
				}
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 || got[0] != "VERSION 3" || got[3] != "sl - - none < 1 amd64 none /a/sl.deb" || !res.Gated {
			t.Fatalf("gate input %q gated %v", got, res.Gated)
		}
		want := "rc=0"
		if veto {
			want = "rc=1"
		}
		if !strings.Contains(out.String(), want) || (veto != (res.Vetoed != nil)) {
			t.Fatalf("veto %v: output %q vetoed %v", veto, out.String(), res.Vetoed)
		}
		if veto && (res.Err() == nil || !strings.Contains(res.Err().Error(), "no room")) {
			t.Errorf("vetoed run's error: %v", res.Err())
		}
	}
	// A run that never reaches the gate ends at once.
	res, err := Run(context.Background(), []string{"true"}, RunOptions{Init: testInit(), Stdin: strings.NewReader(""),
		GateDir: t.TempDir(), Gate: func([]string) error { t.Error("gate without a package manager"); return nil }})
	if err != nil || res.Gated || res.Err() != nil {
		t.Fatalf("no gate: %+v %v", res, err)
	}
}

// With Writable, everything persistent but the writable paths is
// read-only to the package manager; the parent namespace is untouched.
func TestRunReadOnlyBase(t *testing.T) {
	needRoot(t)
	ok, other := t.TempDir(), t.TempDir()
	var out, errOut bytes.Buffer
	script := `echo a > "$OK/file"; echo "ok=$?"; echo b > "$OTHER/file"; echo "other=$?"; grep -c ' ro,' /proc/self/mountinfo >/dev/null; echo c > /proc/self/comm; echo "proc=$?"`
	res, err := Run(context.Background(), []string{"sh", "-c", script}, RunOptions{
		Init: testInit(), Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader(""),
		Env: []string{"OK=" + ok, "OTHER=" + other}, Writable: []string{ok},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := out.String()
	if !strings.Contains(o, "ok=0") || strings.Contains(o, "other=0") || !strings.Contains(o, "other=") || !strings.Contains(o, "proc=0") {
		t.Fatalf("stdout %q stderr %q", o, errOut.String())
	}
	if res.ReadOnly == "" || !strings.Contains(res.ReadOnly, "Read-only file system") {
		t.Errorf("EROFS not noted: %q", res.ReadOnly)
	}
	if _, err := os.Stat(filepath.Join(other, "file")); err == nil {
		t.Fatal("a write outside the writable paths landed")
	}
	// Nothing leaked to this namespace.
	if err := os.WriteFile(filepath.Join(other, "after"), []byte("x"), 0o644); err != nil {
		t.Fatalf("the parent namespace is read-only now: %v", err)
	}
	if !errors.Is((&RunResult{Code: 1, ReadOnly: res.ReadOnly}).Err(), ErrOutside) {
		t.Error("ErrOutside not wrapped")
	}
}
