package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodesAndDispatch(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"ovpkg", "bogus"}, ExitUsage, "", `ovpkg: unknown command "bogus"`},
		{[]string{"ovpkg", "--no-such-flag"}, ExitUsage, "", "Try 'ovpkg --help'"},
		{[]string{"ovpkg", "--help"}, ExitOK, "install", ""},
		{[]string{"ovpkg", "--version"}, ExitOK, "ovpkg version", ""},
		{[]string{"/usr/sbin/mkoverlay", "--help"}, ExitOK, "mkoverlay", ""},
		{[]string{"ovmount", "--help"}, ExitOK, "--root", ""},
		{[]string{"ovmount", "extra"}, ExitUsage, "", "ovmount takes no arguments"},
		{[]string{"eject", "--bogus"}, ExitUsage, "", "eject: "},
		{[]string{"ovpkg", "install"}, ExitUsage, "", "at least one package"},
	}
	for _, c := range cases {
		code, out, errs := run(c.args...)
		if code != c.code || !strings.Contains(out, c.inStdout) || !strings.Contains(errs, c.inStderr) {
			t.Errorf("%q: exit %d (want %d)\nstdout: %s\nstderr: %s", c.args, code, c.code, out, errs)
		}
		if code != ExitOK && strings.Count(strings.TrimSpace(errs), "\n") > 1 {
			t.Errorf("%q: error is not one line (plus the --help hint):\n%s", c.args, errs)
		}
	}
}

// The multi-call binary answers to every name in Names with that tool's
// own help, and ovpkg knows each tool as a subcommand too.
func TestEveryNameHasHelp(t *testing.T) {
	for _, n := range Names() {
		code, out, _ := run(n, "--help")
		if code != ExitOK || !strings.Contains(out, n) {
			t.Errorf("%s --help: exit %d\n%s", n, code, out)
		}
		if n == "ovpkg" {
			continue
		}
		if code, _, _ := run("ovpkg", n, "--help"); code != ExitOK {
			t.Errorf("ovpkg %s --help: exit %d", n, code)
		}
	}
}

// `ovpkg boot ok` is run by ovpkg-boot-ok.service at every init-overlay
// boot, also RAM-only ones: with no card it says so and succeeds.
func TestBootOKWithoutCard(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ovpkg.conf")
	if err := os.WriteFile(conf, []byte("RUN_DIR="+filepath.Join(dir, "run")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run("ovpkg", "boot", "ok", "--config", conf, "--json")
	if code != 0 || !strings.Contains(stderr, "no card is mounted: nothing is on trial") || !strings.Contains(stdout, `"card": false`) {
		t.Fatalf("boot ok without a card: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
