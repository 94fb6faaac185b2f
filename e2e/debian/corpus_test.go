package debian

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// nomandb is a setup fragment: man-db's auto-update switch (the file
// man-db's trigger checks, /var/lib/man-db/auto-update) removed on the
// card, as `dpkg-reconfigure man-db` answering no does.
const nomandb = `rm -f /var/lib/man-db/auto-update
`

// pkgCase is one package of the corpus: what it stands for, how to see
// that it did what it stands for, and how to see it is gone again.
type pkgCase struct {
	name    string   // the test's name and its archive cache's
	install []string // ovpkg install -y ARGS
	remove  []string // ovpkg remove -y ARGS
	cardMiB int
	// onCard: the archives go to the default ARCHIVE_DIR on the card
	// (KEEP_ARCHIVES=no), downloaded on every run, so that archives left
	// on the card would show in its used space; else the test cache.
	onCard bool
	// setup runs after ovmount, before the card's space is first read.
	setup string
	// check runs after the install (and after the rollback of the
	// remove's reinstall it must fail: see gone); it prints markers.
	check string
	want  []string
	// gone runs after the remove and after the rollback of the
	// reinstall; it prints markers (goneWant).
	gone     string
	goneWant []string
	// never runs after the first install is rolled back too (and again
	// after the card was ejected and mounted again): nothing of the
	// packages may be left; it prints markers (neverWant).
	never     string
	neverWant []string
	// commit: the end is `ovpkg commit` (the remove's space freed), not
	// the rollback of the first install.
	commit bool
	// interrupt: a path that appears while dpkg unpacks; when set, an
	// install is interrupted (SIGINT) there first.
	interrupt string
}

// The corpus. Every package was checked against bookworm with
// apt-cache show, dpkg-deb -c and its maintainer scripts (docs/pkgmgr.md,
// "The real-archive corpus"):
//
//   - supertux: the seed's example and the large one: 26 packages, 180 MB
//     to download, 256 MB installed (supertux-data alone 238 MB); its
//     dependencies carry epochs (libopenal1 and libopenal-data 1:1.19.1-2,
//     fonts-roboto-unhinted 2:0~20170802-3, cached by apt as
//     name_1%3a..._arch.deb); 20 shared libraries, so libc-bin's ldconfig
//     trigger runs, and fonts (fontconfig's cache).
//   - tor: its postinst adds the system user and group debian-tor
//     (adduser --system), chowns /var/lib/tor to it, and starts the tor
//     service (invoke-rc.d / deb-systemd-invoke): ovpkg's policy-rc.d must
//     hold the start back, and no tor may run, in the namespace or on the
//     host. Brings logrotate, runit-helper, tor-geoipdb, torsocks.
//   - davfs2: a debconf question (davfs2/suid_file, priority high in its
//     config script, default false); the answer, preseeded with
//     debconf-set-selections on the card (true), reaches the postinst,
//     which then makes /usr/sbin/mount.davfs setuid root with
//     dpkg-statoverride (the host's statoverride file must be untouched).
//     It also adds the system user and group davfs2. (macchanger, the
//     first choice, reads its own conffile in its config script, which at
//     postinst time overrides any preseeded answer, with or without
//     ovpkg.)
//   - molly-guard: its preinst diverts (dpkg-divert --rename) halt,
//     poweroff, reboot, shutdown and coldreboot, which on this base are
//     systemd-sysv's links to systemctl, to /lib/molly-guard/, and ships
//     its own links in their place; the postrm removes the diversions and
//     renames the base's files back. The base's links must be untouched.
//   - netcat-openbsd: its postinst registers /bin/nc with
//     update-alternatives (with slaves netcat and the man pages), its prerm
//     removes it; the host's /etc/alternatives and
//     /var/lib/dpkg/alternatives must be untouched. Its man pages fire
//     man-db's trigger (man-db is in the base): mandb -pq.
//
// man-db's trigger costs 25-30 s per run on the test machine (mandb
// rescans the page directories a package added to; the same with plain
// apt-get on a plain overlay), three runs per package: only
// netcat-openbsd keeps it; the other cases turn it off on their card
// (nomandb) as man-db's own switch does.
var packages = []pkgCase{
	{
		name: "supertux", install: []string{"supertux"}, remove: []string{"supertux", "supertux-data"}, cardMiB: 1024, setup: nomandb, commit: true,
		interrupt: "/usr/share/games/supertux2",
		check: `
/usr/games/supertux2 --version > $D/t/st.out 2>&1; echo "SUPERTUX-EXIT $?"; head -5 $D/t/st.out
dpkg-query -W -f='${Package} ${Version}\n' libopenal1 fonts-roboto-unhinted
ls $D/t/archives | grep -q '^libopenal1_1%3a' && echo EPOCH-ARCHIVE-CACHED
ldconfig -p | grep -q 'libopenal.so.1 ' && echo LDCONFIG-TRIGGER-RAN
grep -q 'Processing triggers for libc-bin' $D/t/install.log && echo LIBC-BIN-TRIGGER
`,
		want: []string{"SUPERTUX-EXIT 0", "supertux2 v0.6.3", "libopenal1 1:", "fonts-roboto-unhinted 2:", "EPOCH-ARCHIVE-CACHED", "LDCONFIG-TRIGGER-RAN", "LIBC-BIN-TRIGGER"},
		gone: `
test -e /usr/games/supertux2 || echo PROGRAM-GONE
test -e /usr/share/games/supertux2 || echo DATA-GONE
`,
		goneWant: []string{"PROGRAM-GONE", "DATA-GONE"},
	},
	{
		name: "tor", install: []string{"tor"}, remove: []string{"tor"}, cardMiB: 128, onCard: true,
		// A real system has no policy-rc.d; this machine's base (a Docker
		// image) has one that refuses every start. Hide it on the card so
		// that ovpkg's own is the one that holds tor back.
		setup: nomandb + `rm -f /usr/sbin/policy-rc.d
`,
		check: `
tor --version | head -1
getent passwd debian-tor | cut -d: -f1,6,7
getent group debian-tor >/dev/null && echo GROUP-ADDED
[ "$(stat -c %U:%G /var/lib/tor)" = debian-tor:debian-tor ] && echo HOME-OWNED
grep -q 'services not started.*tor' $D/t/install.log && echo TOR-HELD-BACK
torrunning
`,
		want: []string{"Tor version 0.4", "debian-tor:/var/lib/tor:/bin/false", "GROUP-ADDED", "HOME-OWNED", "TOR-HELD-BACK", "NO-TOR-RUNNING"},
		gone: `
hash -r; command -v tor >/dev/null || echo PROGRAM-GONE
torrunning
`,
		goneWant: []string{"PROGRAM-GONE", "NO-TOR-RUNNING"},
		never: `
getent passwd debian-tor || echo NEVER-TOR-USER
getent group debian-tor || echo NEVER-TOR-GROUP
test -e /var/lib/tor || echo NEVER-TOR-HOME
`,
		neverWant: []string{"NEVER-TOR-USER", "NEVER-TOR-GROUP", "NEVER-TOR-HOME"},
	},
	{
		name: "davfs2", install: []string{"davfs2"}, remove: []string{"davfs2"}, cardMiB: 128,
		setup: nomandb + `echo 'davfs2 davfs2/suid_file boolean true' | debconf-set-selections
`,
		check: `
mount.davfs --version | head -1
debconf-show davfs2 | grep suid_file
echo "MODE $(stat -c %a /usr/sbin/mount.davfs)"
dpkg-statoverride --list /usr/sbin/mount.davfs
getent passwd davfs2 | cut -d: -f1,6
`,
		want: []string{"davfs2 1.", "davfs2/suid_file: true", "MODE 4755", "root root 4755 /usr/sbin/mount.davfs", "davfs2:/var/cache/davfs2"},
		gone: `
hash -r; command -v mount.davfs >/dev/null || echo PROGRAM-GONE
`,
		goneWant: []string{"PROGRAM-GONE"},
		never: `
getent passwd davfs2 || echo NEVER-DAVFS2-USER
dpkg-statoverride --list /usr/sbin/mount.davfs || echo NEVER-STATOVERRIDE
`,
		neverWant: []string{"NEVER-DAVFS2-USER", "NEVER-STATOVERRIDE"},
	},
	{
		name: "molly-guard", install: []string{"molly-guard"}, remove: []string{"molly-guard"}, cardMiB: 128, setup: nomandb,
		check: `
echo "SHUTDOWN -> $(readlink /usr/sbin/shutdown)"
echo "DIVERTED -> $(readlink /lib/molly-guard/shutdown)"
dpkg-divert --list molly-guard | grep -c 'diversion of /sbin/.* by molly-guard' | sed 's/^/DIVERSIONS /'
dpkg-divert --truename /sbin/reboot
shutdown --help 2>&1 | grep -q molly-guard && echo PROGRAM-RUNS
`,
		want: []string{"SHUTDOWN -> /lib/molly-guard/molly-guard", "DIVERTED -> /bin/systemctl", "DIVERSIONS 5", "/lib/molly-guard/reboot", "PROGRAM-RUNS"},
		gone: `
echo "SHUTDOWN -> $(readlink /usr/sbin/shutdown)"
dpkg-divert --list molly-guard | grep -q . || echo NO-DIVERSIONS
test -e /lib/molly-guard/shutdown || echo DIVERTED-FILE-BACK
`,
		goneWant: []string{"SHUTDOWN -> /bin/systemctl", "NO-DIVERSIONS", "DIVERTED-FILE-BACK"},
		never: `
dpkg-divert --list | grep molly || echo NEVER-DIVERSION
[ "$(readlink /usr/sbin/shutdown)" = /bin/systemctl ] && echo NEVER-SHUTDOWN-BASE
`,
		neverWant: []string{"NEVER-DIVERSION", "NEVER-SHUTDOWN-BASE"},
	},
	{
		name: "netcat-openbsd", install: []string{"netcat-openbsd"}, remove: []string{"netcat-openbsd"}, cardMiB: 128,
		check: `
echo "ALT -> $(readlink /etc/alternatives/nc)"
update-alternatives --query nc | grep '^Value:'
nc -h 2>&1 | grep -q 'OpenBSD netcat' && echo PROGRAM-RUNS
grep -q 'Processing triggers for man-db' $D/t/install.log && echo MAN-DB-TRIGGER
`,
		want: []string{"ALT -> /bin/nc.openbsd", "Value: /bin/nc.openbsd", "PROGRAM-RUNS", "MAN-DB-TRIGGER"},
		gone: `
test -e /etc/alternatives/nc || echo ALT-GONE
update-alternatives --query nc >/dev/null 2>&1 || echo NO-ALTERNATIVE
`,
		goneWant: []string{"ALT-GONE", "NO-ALTERNATIVE"},
		never: `
test -e /etc/alternatives/nc || echo NEVER-ALT-LINK
test -e /var/lib/dpkg/alternatives/nc || echo NEVER-ALT-DB
`,
		neverWant: []string{"NEVER-ALT-LINK", "NEVER-ALT-DB"},
	},
}

// corpus is what TestCorpus runs: the three small packages share one
// card and one transaction per verb (and man-db's trigger) (each apt run costs 10-30 s on a
// loaded 2-core machine, mostly apt's and dpkg's own start-up), the
// others have a card each.
var corpus = []pkgCase{packages[0], packages[1], together("small", packages[2:]...)}

// together makes one case of several: installed, removed, reinstalled and
// rolled back together, every check of each.
func together(name string, cs ...pkgCase) pkgCase {
	m := pkgCase{name: name}
	mandb := false // man-db's trigger stays on when one of them keeps it
	for _, c := range cs {
		mandb = mandb || !strings.Contains(c.setup, nomandb)
		c.setup = strings.ReplaceAll(c.setup, nomandb, "")
		m.install = append(m.install, c.install...)
		m.remove = append(m.remove, c.remove...)
		m.cardMiB = max(m.cardMiB, c.cardMiB)
		m.onCard = m.onCard || c.onCard
		if !strings.Contains(m.setup, c.setup) {
			m.setup += c.setup
		}
		m.check += c.check
		m.want = append(m.want, c.want...)
		m.gone += c.gone
		m.goneWant = append(m.goneWant, c.goneWant...)
		m.never += c.never
		m.neverWant = append(m.neverWant, c.neverWant...)
	}
	if !mandb {
		m.setup = nomandb + m.setup
	}
	return m
}

// TestCorpus installs each package of the corpus from Debian's archive on
// a fresh card over the host's real /usr /etc /var, one private mount
// namespace per package and these steps in it:
//
//	ovmount; install -y (the program runs, its peculiarity checked,
//	dpkg --audit and apt-get check clean); remove -y (gone, clean);
//	install -y again and rollback (gone again, clean); eject
//
// The card's used space (statfs in the namespace) is read before and after
// each step: the install must use about what its packages state as
// installed size (no archives hidden in a layer), the rollback must leave
// it within 1 MiB of what it was before the reinstall. Outside the
// namespace, the host's dpkg database, users, diversions, alternatives,
// debconf and linker caches are compared byte for byte before and after,
// and no process the packages brought (tor) may be left.
func TestCorpus(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.Need(t, "apt-get", "dpkg", "sha256sum", "stat")
	for _, c := range corpus {
		c := c
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runCase(t, c)
		})
	}
}

func runCase(t *testing.T, c pkgCase) {
	nstest.NeedArchive(t, c.install...)
	cache := "oncard"
	if !c.onCard {
		cache = nstest.AptArchives(t, "corpus-"+c.name)
	}
	before := hostState(t)
	t.Cleanup(func() {
		after := hostState(t)
		for _, k := range sortedKeys(before) {
			if before[k] != after[k] {
				t.Errorf("the host's %s changed during the test", k)
			}
		}
		if p := procsNamed("tor"); len(p) > 0 {
			t.Errorf("tor processes left on the host: %v", p)
		}
	})
	dir := nstest.TempDir(t)
	if err := os.Mkdir(filepath.Join(dir, "t"), 0o700); err != nil {
		t.Fatal(err)
	}
	inst, rm := strings.Join(c.install, " "), strings.Join(c.remove, " ")
	// The end: back to the start (the first install rolled back too), or
	// the install and the remove committed (squashed), which frees what
	// the remove removed.
	endStep, end, endCheck := "rollback2", `
step rollback2 ovpkg rollback 2
echo "USED rollback2 $(used)"
never
clean rollback2
`, "never"
	// Ctrl-C while dpkg unpacks (once c.interrupt appears in the merged
	// view): the transaction is undone, the card as it was. Waits with
	// bash builtins only: a program started from the overlaid /usr meanwhile
	// would hold the overlays.
	interrupt := ""
	if c.interrupt != "" {
		interrupt = fmt.Sprintf(`
mkfifo /run/ovpkg/nap; exec 9<>/run/ovpkg/nap
ovpkg install -y %[1]s > $D/t/interrupt.log 2>&1 & OV=$!
for ((i = 0; i < 3000; i++)); do [ -e %[2]q ] && break; read -t 0.1 -u 9; done
echo "INTERRUPTED AFTER $i"
kill -INT $OV; wait $OV; echo "INTERRUPT-CODE=$?"
sed -n 's/^ovpkg: /OVPKG interrupt: /p' $D/t/interrupt.log
echo "USED interrupted $(used)"
dpkg-query -W %[1]s >/dev/null 2>&1 || echo NOT-INSTALLED-AFTER-INTERRUPT
ovpkg list --json | grep -q '"name"' || echo NO-CARD-PACKAGES-AFTER-INTERRUPT
clean interrupted
`, inst, c.interrupt)
	}
	if c.commit {
		endStep, end, endCheck = "commit", `
step commit ovpkg commit
echo "USED commit $(used)"
`+c.gone+`
clean commit
`, c.gone
	}
	script := fmt.Sprintf(`
set +e +o pipefail # the checks print markers; the steps stop the script
D=%[1]s
export DEBIAN_FRONTEND=noninteractive
mount -t tmpfs -o size=%[2]dm scratch "$D/t" || exit 1
export OVPKG_CONFIG=$D/t/ovpkg.conf
cat > "$OVPKG_CONFIG" <<EOC
MOUNTPOINT=$D/t/card
OVERLAY_DIRS="usr etc var"
EOC
if [ %[3]q != oncard ]; then
  mkdir -p "$D/t/archives"; mount --bind %[3]q "$D/t/archives" || exit 1
  printf 'ARCHIVE_DIR=%%s\nKEEP_ARCHIVES=yes\n' "$D/t/archives" >> "$OVPKG_CONFIG"
fi
mkoverlay %[4]d "$D/t/card.img" >/dev/null || exit 1
used() { stat -f -c '%%b %%f %%S' "$D/t/card" | awk '{print int(($1-$2)*$3/1024)}'; }
ms() { local t=${EPOCHREALTIME/./}; echo $((t/1000)); }
torrunning() {
  local p c n=0
  for p in /proc/[0-9]*; do
    c=; read -r c < $p/comm 2>/dev/null || true
    [ "$c" = tor ] && { echo "TOR-RUNNING $p"; n=1; }
  done
  [ $n = 0 ] && echo NO-TOR-RUNNING
}
never() {
%[10]s
  ovpkg list --json | grep -q '"name"' || echo NEVER-NO-CARD-PACKAGES
}
clean() { dpkg --audit && apt-get check -q >/dev/null && echo "CLEAN-$1"; }
step() { # step NAME CMD...: runs it with its output in $D/t/NAME.log, timed
  local n=$1 t0 rc; shift; t0=$(ms)
  "$@" > $D/t/$n.log 2>&1 && rc=0 || rc=$?
  echo "TIME $n $(( $(ms) - t0 ))"
  if [ $rc != 0 ]; then echo "FAILED $n ($rc):"; cat $D/t/$n.log; exit 1; fi
}
step ovmount ovmount
%[5]s
echo "USED start $(used)"
%[14]s
step install ovpkg install -y %[6]s
echo "USED install $(used)"
find "$D/t/card" -name '*.deb' | grep . || echo NO-DEB-ON-CARD
grep -E '^ovpkg: (installed|services|the system)' $D/t/install.log || true
ovpkg list --json | sed -n 's/.*"installed_size": \([0-9]*\).*/\1/p' | awk '{s+=$1} END {print "STATED", int(s/1024)}'
%[7]s
clean install
dpkg-query -W -f='${Installed-Size}\n' %[8]s | awk '{s+=$1} END {print "REMOVING", s}'
step remove ovpkg remove -y %[8]s
echo "USED remove $(used)"
%[9]s
clean remove
step reinstall ovpkg install -y %[6]s
echo "USED reinstall $(used)"
step rollback ovpkg rollback
echo "USED rollback $(used)"
%[9]s
clean rollback
%[11]s
ovpkg history
step eject eject
# Pulled and put back: the card's layers come back as they were.
step ovmount2 ovmount
%[12]s
step eject2 eject
for f in install remove reinstall rollback %[13]s; do sed -n "s/^ovpkg: /OVPKG $f: /p" $D/t/$f.log; done
echo DONE
`, dir, c.cardMiB+64, cache, c.cardMiB, c.setup, inst, c.check, rm, c.gone, c.never, end, endCheck, endStep, interrupt)
	start := time.Now()
	r := nstest.RunTimeout(t, 20*time.Minute, script)
	t.Logf("%s: %v\n%s", c.name, time.Since(start).Round(time.Second), r.Stdout)
	if r.Code != 0 {
		t.Fatalf("script failed: %s", r)
	}
	all := r.Stdout + r.Stderr
	for _, w := range append(append([]string{"CLEAN-install", "CLEAN-remove", "CLEAN-rollback", "CLEAN-" + endStep, "NO-DEB-ON-CARD", "DONE",
		// The remove says when its space comes back (it did not say so).
		"frees about", "of the card only once committed"}, c.want...), c.goneWant...) {
		if !strings.Contains(all, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if c.interrupt != "" {
		for _, w := range []string{"INTERRUPT-CODE=1", "interrupted", "undone: the card is as it was before", "NOT-INSTALLED-AFTER-INTERRUPT",
			"NO-CARD-PACKAGES-AFTER-INTERRUPT", "CLEAN-interrupted"} {
			if !strings.Contains(all, w) {
				t.Errorf("output lacks %q", w)
			}
		}
	}
	if c.commit {
		for _, w := range c.goneWant {
			if strings.Count(all, w) < 4 {
				t.Errorf("%q not seen after each of remove, rollback, commit and ovmount", w)
			}
		}
	} else {
		for _, w := range c.goneWant {
			if strings.Count(all, w) < 2 {
				t.Errorf("%q not seen after both the remove and the rollback", w)
			}
		}
		for _, w := range append([]string{"NEVER-NO-CARD-PACKAGES"}, c.neverWant...) {
			if strings.Count(all, w) < 2 {
				t.Errorf("%q not seen both after rolling back everything and after ovmount", w)
			}
		}
	}
	checkSpace(t, r.Stdout, endStep)
}

// checkSpace reads the "USED step KiB" and "STATED KiB" lines: the
// install uses at least 90% of the installed size its packages state and
// at most 6% more plus 5 MiB (measured: ext2's blocks for many small
// files about 5%, dpkg's and debconf's copied-up databases and the
// transaction's bookkeeping 2.7-4.4 MiB), so that archives left on the
// card (tor's are 15% of its installed size) show; the rollback leaves
// the card within 1 MiB of where the remove left it; a commit after the
// remove frees at least 90% of what the removed packages state.
func checkSpace(t *testing.T, out, end string) {
	t.Helper()
	used := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^USED (\w+) (\d+)$`).FindAllStringSubmatch(out, -1) {
		used[m[1]], _ = strconv.Atoi(m[2])
	}
	m := regexp.MustCompile(`(?m)^STATED (\d+)$`).FindStringSubmatch(out)
	rm := regexp.MustCompile(`(?m)^REMOVING (\d+)$`).FindStringSubmatch(out)
	if _, ok := used["interrupted"]; ok {
		if d := used["interrupted"] - used["start"]; d > 1024 || d < -1024 {
			t.Errorf("after the interrupted install the card uses %d KiB, before it %d: more than 1 MiB apart", used["interrupted"], used["start"])
		}
		delete(used, "interrupted")
	}
	if m == nil || rm == nil || len(used) != 6 {
		t.Fatalf("no STATED, REMOVING or USED lines in:\n%s", out)
	}
	stated, _ := strconv.Atoi(m[1])
	removing, _ := strconv.Atoi(rm[1])
	grew := used["install"] - used["start"]
	t.Logf("card KiB: start %d, install %d (+%d, packages state %d), remove %d (of %d), reinstall %d, rollback %d, %s %d",
		used["start"], used["install"], grew, stated, used["remove"], removing, used["reinstall"], used["rollback"], end, used[end])
	if grew < stated*9/10 || grew > stated*106/100+5*1024 {
		t.Errorf("the install used %d KiB of card for %d KiB stated installed size", grew, stated)
	}
	if d := used["rollback"] - used["remove"]; d > 1024 || d < -1024 {
		t.Errorf("after the rollback the card uses %d KiB, after the remove %d: more than 1 MiB apart", used["rollback"], used["remove"])
	}
	if end == "commit" && used["commit"] > used["remove"]-removing*9/10 {
		t.Errorf("the commit after removing %d KiB left the card at %d KiB, from %d", removing, used["commit"], used["remove"])
	}
}

// hostState hashes what no test may change on the host: the dpkg
// database (status, the info/ listing with sizes, diversions,
// alternatives), users and groups, debconf's databases, the linker's and
// man-db's caches, /etc/alternatives and the links molly-guard diverts.
func hostState(t *testing.T) map[string]string {
	t.Helper()
	s := map[string]string{}
	file := func(p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			s[p] = "missing: " + err.Error()
			return
		}
		s[p] = fmt.Sprintf("%x", sha256.Sum256(b))
	}
	listing := func(d string) {
		h := sha256.New()
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				fmt.Fprintf(h, "%s: %v\n", p, err)
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return nil
			}
			l, _ := os.Readlink(p)
			fmt.Fprintf(h, "%s %v %d %s\n", p, fi.Mode(), fi.Size(), l)
			return nil
		})
		s[d+"/ (listing)"] = fmt.Sprintf("%x", h.Sum(nil))
	}
	for _, p := range []string{"/var/lib/dpkg/status", "/var/lib/dpkg/diversions", "/var/lib/dpkg/statoverride", "/etc/passwd", "/etc/group", "/etc/shadow",
		"/etc/gshadow", "/var/cache/debconf/config.dat", "/var/cache/debconf/templates.dat", "/etc/ld.so.cache", "/var/cache/man/index.db"} {
		file(p)
	}
	for _, d := range []string{"/var/lib/dpkg/info", "/var/lib/dpkg/alternatives", "/etc/alternatives"} {
		listing(d)
	}
	file("/usr/sbin/policy-rc.d")
	for _, l := range []string{"halt", "poweroff", "reboot", "shutdown"} {
		p := "/usr/sbin/" + l
		v, err := os.Readlink(p)
		if err != nil {
			v = err.Error()
		}
		s[p] = v
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// procsNamed lists the PIDs of processes whose comm is name.
func procsNamed(name string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && strings.TrimSpace(string(b)) == name {
			out = append(out, e.Name())
		}
	}
	return out
}
