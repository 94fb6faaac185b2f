package app_test

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// Issue 8, item 4: what a tiny install from Debian's archive (sl) adds to
// the card beyond the package's own files is at most 1 MiB (it was about
// 7: man-db's index, debconf's templates, dpkg's status-old, logs), from
// the second change on a card on; the first change also copies the logs
// and -old backups up once, into the bottom layer (docs/layers.md). Measured
// with statfs of the card, the package's files with du of what dpkg
// lists. Then both transactions are rolled back: dpkg (--audit, apt-get
// check), debconf (the question macchanger asked is gone, the database
// reads as before) and man-db (`man -w` finds the base's pages and not
// the removed ones; `mandb -t` checks the hierarchy) are consistent.
// macchanger: a debconf question, a man page, an info page (triggers).
func TestArchiveTxnOverheadRollback(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "man", "mandb", "debconf-show", "du")
	needArchive(t, "sl", "macchanger")
	r, _ := pkgRun(t, 128, archiveCache(t)+usedKiB+`
set +e
# the package's own files, in KiB of card blocks (regular files only;
# their directories count as overhead)
files() { dpkg -L "$1" | while IFS= read -r f; do [ -f "$f" ] && [ ! -L "$f" ] && printf '%s\0' "$f"; done | du -k -c --files0-from=- | tail -1 | cut -f1; }
# debconf-show reads the database read-only (debconf-communicate would
# write it back into the working layer)
question() { debconf-show macchanger 2>/dev/null | grep -q 'macchanger/automatically_run'; }
question && echo QUESTION-IN-BASE
debconf-show --listowners | sort > $D/t/owners.before
man -w ls >/dev/null && echo BASE-MAN
ovmount >/dev/null
U0=$(used)
ovpkg install -y macchanger > $D/t/i1 2>&1; echo "INSTALL1=$?"; tail -5 $D/t/i1
U1=$(used)
echo "TXN1 $((U1-U0)) $(files macchanger)"
ovpkg install -y sl > $D/t/i2 2>&1; echo "INSTALL2=$?"; tail -3 $D/t/i2
U2=$(used)
echo "TXN2 $((U2-U1)) $(files sl)"
ovpkg history --json | tr -d ' \n'; echo
question && echo QUESTION-ON-CARD
man -w sl >/dev/null && man -w macchanger >/dev/null && echo PAGES-FOUND
ovpkg rollback >/dev/null; echo "ROLLBACK1=$?"
dpkg-query -W sl 2>/dev/null || echo SL-GONE
ovpkg rollback >/dev/null; echo "ROLLBACK2=$?"
U3=$(used)
dpkg-query -W macchanger 2>/dev/null || echo MACCHANGER-GONE
dpkg --audit && echo AUDIT-CLEAN
apt-get check >/dev/null && echo APT-CHECK-CLEAN
question || echo QUESTION-GONE
debconf-show --listowners | sort | cmp -s - $D/t/owners.before && echo DEBCONF-AS-BEFORE
man -w sl >/dev/null 2>&1 || echo SL-PAGE-GONE
man -w macchanger >/dev/null 2>&1 || echo MACCHANGER-PAGE-GONE
man -w ls >/dev/null && echo BASE-MAN-FOUND
mandb -t -q && echo MANDB-CHECK-CLEAN
echo "AFTER-ROLLBACK $((U3-U0))"
eject >/dev/null && echo EJECTED
baseSame && echo BASE-SAME
`)
	wantOut(t, r, "BASE-MAN", "INSTALL1=0", "INSTALL2=0", "QUESTION-ON-CARD", "PAGES-FOUND", "ROLLBACK1=0", "SL-GONE",
		"ROLLBACK2=0", "MACCHANGER-GONE", "AUDIT-CLEAN", "APT-CHECK-CLEAN", "QUESTION-GONE", "DEBCONF-AS-BEFORE",
		"SL-PAGE-GONE", "MACCHANGER-PAGE-GONE", "BASE-MAN-FOUND", "MANDB-CHECK-CLEAN", "EJECTED", "BASE-SAME")
	wantNot(t, r, "QUESTION-IN-BASE")
	txn := func(n string) (delta, files int) {
		m := regexp.MustCompile(`TXN` + n + ` (-?\d+) (\d+)`).FindStringSubmatch(r.Stdout)
		if m == nil {
			t.Fatalf("no TXN%s line: %s", n, r)
		}
		delta, _ = strconv.Atoi(m[1])
		files, _ = strconv.Atoi(m[2])
		return
	}
	d1, f1 := txn("1")
	d2, f2 := txn("2")
	t.Logf("first change (macchanger): card +%d KiB, files %d KiB, overhead %d KiB", d1, f1, d1-f1)
	t.Logf("second change (sl): card +%d KiB, files %d KiB, overhead %d KiB", d2, f2, d2-f2)
	if f2 == 0 || f1 == 0 {
		t.Errorf("no package files measured: %s", r)
	}
	if d2-f2 > 1024 {
		t.Errorf("a tiny install (sl) took %d KiB of card beyond its %d KiB of files: more than 1 MiB\n%s", d2-f2, f2, r)
	}
	// The first change on a card also brings the shared bookkeeping up
	// once (logs, -old backups into the bottom layer; the base's status
	// for the drift records), and macchanger's templates rewrite
	// debconf's templates.dat (1 MB, rolled back with it): logged above,
	// documented in docs/benchmarks.md, not a per-transaction cost.
}

func wantNot(t *testing.T, r nstest.Result, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(s) + `$`).MatchString(r.Stdout) {
			t.Errorf("output has %q:\n%s", s, r)
		}
	}
}

// The upgrade summary (issue 8): `ovpkg upgrade -y PKG` of a base
// package whose new version is no larger said "(0 B)"; it now says what
// the card holds for it, which statfs confirms. Rolled back, the base's
// version is back and dpkg is consistent. Needs a small base package
// with an upgrade pending in the archive (a fresh, fully upgraded system
// has none: then there is nothing to test).
func TestArchiveUpgradeSummary(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "apt-get")
	pkg := ""
	for _, c := range []string{"base-files", "libcap2", "zlib1g", "login", "bash"} {
		out, err := exec.Command("apt-get", "-s", "install", "--only-upgrade", c).Output()
		if err == nil && strings.Count(string(out), "\nInst ") == 1 && strings.Contains(string(out), "\nInst "+c+" [") {
			pkg = c
			break
		}
	}
	if pkg == "" {
		t.Skip("no small base package has an upgrade pending here")
	}
	needArchive(t, pkg)
	r, _ := pkgRun(t, 64, archiveCache(t)+usedKiB+`
set +e
V0=$(dpkg-query -W -f='${Version}' `+pkg+`)
ovmount >/dev/null
U0=$(used)
ovpkg upgrade -y `+pkg+` > $D/t/out 2>&1; echo "UPGRADE=$?"
cat $D/t/out
U1=$(used)
echo "GROWTH $((U1-U0))"
[ "$(dpkg-query -W -f='${Version}' `+pkg+`)" != "$V0" ] && echo NEW-VERSION
dpkg --audit && echo AUDIT-CLEAN
ovpkg rollback >/dev/null; echo "ROLLBACK=$?"
[ "$(dpkg-query -W -f='${Version}' `+pkg+`)" = "$V0" ] && echo BASE-VERSION-BACK
dpkg --audit && echo AUDIT-CLEAN-AFTER
eject >/dev/null
baseSame && echo BASE-SAME
`)
	wantOut(t, r, "UPGRADE=0", "upgraded on the card: "+pkg+" ", "NEW-VERSION", "AUDIT-CLEAN", "ROLLBACK=0",
		"BASE-VERSION-BACK", "AUDIT-CLEAN-AFTER", "BASE-SAME")
	if strings.Contains(r.Stdout, "(0 B)") {
		t.Errorf("the summary says 0 B:\n%s", r)
	}
	m := regexp.MustCompile(`upgraded on the card: .*\(.*?([0-9.]+) (B|KiB|MiB) on the card\)`).FindStringSubmatch(r.Stdout)
	g := regexp.MustCompile(`GROWTH (-?\d+)`).FindStringSubmatch(r.Stdout)
	if m == nil || g == nil {
		t.Fatalf("no card size in the summary, or no GROWTH: %s", r)
	}
	t.Logf("%s; statfs grew %s KiB", m[0], g[1])
	said, _ := strconv.ParseFloat(m[1], 64)
	said *= map[string]float64{"B": 1.0 / 1024, "KiB": 1, "MiB": 1024}[m[2]]
	grew, _ := strconv.Atoi(g[1])
	// statfs also counts the card's own bookkeeping and the first
	// change's shared logs (docs/layers.md): within 2 MiB.
	if said <= 0 || float64(grew)-said > 2048 || said-float64(grew) > 2048 {
		t.Errorf("the summary says %.0f KiB on the card, statfs grew %d KiB:\n%s", said, grew, r)
	}
}
