package app_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/pkgmgr/debtest"
)

// Issue 8, finding 7: the eject refusal says one line per holding process
// (PID, command, why, with counts: a program started from the overlaid
// /usr maps a dozen files there) instead of a line per mapping, and
// --json prints the same as JSON (safe_to_remove false) on stdout.
func TestPkgE2EEjectRefusalOneLinePerHolder(t *testing.T) {
	r, _ := pkgRun(t, 64, `
set +e
ovmount >/dev/null
# started from the overlaid /usr: exe and mappings under it, cwd on /var
(cd /var/tmp && exec sleep 3600) & H1=$!
sleep 3601 < /etc/hostname & H2=$!
for i in $(seq 100); do [ "$(readlink /proc/$H1/exe)" = /usr/bin/sleep ] && [ "$(readlink /proc/$H2/exe)" = /usr/bin/sleep ] && break; read -t 0.05 <> <(:) || true; done
echo "H1=$H1 H2=$H2"
eject > $D/t/out 2> $D/t/err; echo "EJECT=$?"
cat $D/t/err
echo "LINES-H1=$(grep -c "PID $H1 " $D/t/err) LINES-H2=$(grep -c "PID $H2 " $D/t/err) LINES=$(wc -l < $D/t/err)"
eject --json > $D/t/json 2> $D/t/jerr; echo "EJECT-JSON=$?"
echo JSON-START; cat $D/t/json; echo JSON-END
kill $H1 $H2; wait $H1 $H2
eject >/dev/null && echo EJECTED
baseSame && echo BASE-SAME
`)
	wantOut(t, r, "EJECT=1", "EJECT-JSON=1", "EJECTED", "BASE-SAME", "nothing was unmounted")
	var h1, h2 int
	if m := regexp.MustCompile(`H1=(\d+) H2=(\d+)`).FindStringSubmatch(r.Stdout); m != nil {
		fmt.Sscan(m[1], &h1)
		fmt.Sscan(m[2], &h2)
	}
	m := regexp.MustCompile(`LINES-H1=(\d+) LINES-H2=(\d+) LINES=(\d+)`).FindStringSubmatch(r.Stdout)
	if h1 == 0 || m == nil {
		t.Fatalf("no PIDs or line counts: %s", r)
	}
	// a header and one line per process: nothing per mapping
	if m[1] != "1" || m[2] != "1" || m[3] != "3" {
		t.Errorf("want a header and one line per holder, got %s lines (H1 %s, H2 %s):\n%s", m[3], m[1], m[2], r)
	}
	for _, want := range []string{fmt.Sprintf("PID %d (sleep): ", h1), "cwd /var/tmp", "exe /usr/bin/sleep", "mappings under /usr/lib",
		fmt.Sprintf("PID %d (sleep): ", h2), "/etc/hostname"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("refusal lacks %q:\n%s", want, r)
		}
	}
	_, js, _ := strings.Cut(r.Stdout, "JSON-START\n")
	js, _, _ = strings.Cut(js, "JSON-END")
	var got struct {
		Safe  *bool  `json:"safe_to_remove"`
		Error string `json:"error"`
		Busy  []struct {
			PID     int    `json:"pid"`
			Command string `json:"command"`
			Uses    []struct {
				What  string `json:"what"`
				Count int    `json:"count"`
				Path  string `json:"path"`
			} `json:"uses"`
		} `json:"busy"`
	}
	nstest.JSON(t, js, &got)
	if got.Safe == nil || *got.Safe || got.Error == "" || len(got.Busy) != 2 {
		t.Fatalf("--json refusal: %+v\n%s", got, r)
	}
	maps := 0
	for _, p := range got.Busy {
		if p.PID != h1 && p.PID != h2 || p.Command != "sleep" {
			t.Errorf("unexpected holder %+v", p)
		}
		for _, u := range p.Uses {
			if u.Count > 1 {
				maps++
			}
		}
	}
	if maps == 0 {
		t.Errorf("no use with a count (mappings) in --json: %+v", got)
	}
}

// Issue 8, finding 7: removing a package whose prerm stops its service
// (held back by ovpkg's policy-rc.d) says the service was left alone, not
// "start them with service NAME start".
func TestPkgE2ERemoveServiceAdvice(t *testing.T) {
	nstest.Need(t, "dpkg-deb")
	p := prefix(t)
	svc := p + "-svc"
	deb := debtest.Build(t, t.TempDir(), debtest.Spec{Name: svc, Files: map[string]debtest.File{
		"etc/init.d/" + svc: {Mode: 0o755, Data: "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: " + svc +
			"\n# Required-Start:\n# Required-Stop:\n# Default-Start: 2 3 4 5\n# Default-Stop: 0 1 6\n# Short-Description: test\n### END INIT INFO\nexit 0\n"},
	}, Postinst: "update-rc.d " + svc + " defaults >/dev/null 2>&1 || true\ninvoke-rc.d " + svc + " start || true",
		Prerm: "invoke-rc.d " + svc + " stop || true"})
	r, _ := pkgRun(t, 64, fmt.Sprintf(`
ovmount >/dev/null
rm -f /usr/sbin/policy-rc.d   # the base's own (a container's) would decide instead
ovpkg install -y %[1]s
ovpkg remove -y %[2]s > $D/t/rm 2>&1
cat $D/t/rm
dpkg-query -W %[2]s 2>/dev/null || echo REMOVED
eject >/dev/null
baseSame && echo BASE-SAME
`, deb, svc))
	if r.Code != 0 {
		t.Fatalf("script failed: %s", r)
	}
	wantOut(t, r, "services not started (so they do not hold the card): "+svc, "start with `service "+svc+" start`", "REMOVED", "BASE-SAME",
		"services of the removed packages were left alone", ": "+svc+";")
	_, rm, _ := strings.Cut(r.Stdout, "removed from the card")
	if strings.Contains(r.Stdout[strings.Index(r.Stdout, "ovpkg: to remove"):], "start with") || rm == "" {
		t.Errorf("the remove advice speaks of starting the service:\n%s", r)
	}
}
