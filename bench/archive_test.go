package bench

import (
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// BenchmarkPkgArchive times `ovpkg install -y PKG` (a fresh card, mounted
// over the real /usr /etc /var) against `apt-get install -y PKG` on a
// plain overlay with a tmpfs upper over the same directories, both from a
// warm archive cache (nstest.AptArchives "bench-archive": ARCHIVE_DIR with
// KEEP_ARCHIVES=yes for ovpkg, Dir::Cache::Archives for apt), each run in
// a private mount namespace of its own, alternating which goes first,
// b.N runs each. Reported: the medians and x-apt = median ovpkg / median
// apt (target <= 1.15), and where ovpkg's own time goes (the phase
// lines it prints, timestamped, summed per run, medians over runs): ms
// before apt runs, apt's resolve and download up to the gate, the gate's
// check, the rest of the package manager's run (dpkg), and the commit;
// own-ms is the median of ovpkg's own part (before + gate + commit) and
// x-apt-own = (apt + own) / apt, the ratio without the load's noise in
// the package manager's own run.
func BenchmarkPkgArchive(b *testing.B) {
	for _, pkg := range []string{"sl", "supertux"} {
		b.Run(pkg, func(b *testing.B) { benchArchive(b, pkg) })
	}
}

func benchArchive(b *testing.B, pkg string) {
	nstest.RequireRoot(b)
	nstest.Need(b, "apt-get")
	if out, err := exec.Command("apt-get", "install", "--print-uris", "-qq", pkg).Output(); err != nil || len(out) == 0 {
		nstest.Skip(b, "apt cannot resolve %s (%v): run apt-get update", pkg, err)
	}
	cache := nstest.AptArchives(b, "bench-archive")
	dir := nstest.TempDir(b)
	script := fmt.Sprintf(`
D=%[1]s; CACHE=%[2]s; PKG=%[3]s; N=%[4]d
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
mount -t tmpfs -o size=3g scratch $D
mkdir -p $D/archives; mount --bind $CACHE $D/archives
now() { local t=${EPOCHREALTIME/./}; echo ${t}000; } # a builtin: nothing run from the overlaid /usr
plain() { # a plain overlay with a tmpfs upper over usr etc var
  mount -t tmpfs -o size=1g up $D/up
  for d in usr etc var; do mkdir -p $D/up/$d $D/up/$d.w; mount -t overlay o -o lowerdir=/$d,upperdir=$D/up/$d,workdir=$D/up/$d.w /$d; done
}
mkdir -p $D/up
# Warm the cache (downloads only, into the cache; any lock file lands in
# a throwaway overlay).
unshare -m --propagation private bash -c "$(declare -f plain); D=$D; plain; apt-get install -qq --download-only -y -o Dir::Cache::Archives=$D/archives/ $PKG" >/dev/null 2>&1 || { echo "WARM-FAILED"; exit 1; }
apt1() {
  unshare -m --propagation private bash -c "$(declare -f plain now); D=$D; plain; t0=\$(now); apt-get install -y -o Dir::Cache::Archives=$D/archives/ $PKG >$D/apt.log 2>&1 || { tail -5 $D/apt.log; exit 1; }; t1=\$(now); echo APT \$((t1-t0))"
}
ov1() {
  unshare -m --propagation private bash -c "
    set -e; D=$D; $(declare -f now)
    rm -f $D/card.img; mkdir -p /run/ovpkg; mount -t tmpfs -o mode=0700,size=4m r /run/ovpkg
    export OVPKG_CONFIG=$D/ovpkg.conf
    printf 'MOUNTPOINT=%%s\nOVERLAY_DIRS=\"usr etc var\"\nARCHIVE_DIR=%%s\nKEEP_ARCHIVES=yes\n' $D/card $D/archives > \$OVPKG_CONFIG
    mkoverlay 1024 $D/card.img >/dev/null; ovmount >/dev/null
    t0=\$(now)
    ovpkg install -y $PKG 2>&1 >$D/ov.out | while IFS= read -r l; do echo \"\$(now) \$l\"; done > $D/ov.err || true
    t1=\$(now)
    grep -q 'installed on the card' $D/ov.err || { tail -20 $D/ov.err; exit 1; }
    echo OV \$((t1-t0)) \$t0
    sed 's/^/PHASE /' $D/ov.err
    eject >/dev/null"
}
for i in $(seq $N); do
  if [ $((i %% 2)) = 1 ]; then apt1; ov1; else ov1; apt1; fi
done
`, dir, cache, pkg, b.N)
	b.ResetTimer()
	r := nstest.RunTimeout(b, 60*time.Minute, script)
	b.StopTimer()
	if r.Code != 0 || strings.Contains(r.Stdout, "WARM-FAILED") {
		nstest.Skip(b, "benchmark script (archive unreachable?): %s", r)
	}
	var ov, apt []float64
	// Per ovpkg run: the time from one phase line to the next phase's
	// (progress and heartbeat lines of the same phase do not split it),
	// summed per phase; the medians are over runs.
	var runs []map[string]float64
	var last float64
	var lastPhase string
	for _, l := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "APT":
			apt = append(apt, ms(f[1]))
		case len(f) == 3 && f[0] == "OV":
			ov = append(ov, ms(f[1]))
			runs = append(runs, map[string]float64{})
			last, lastPhase = ms(f[2]), "before the package manager"
		case len(f) >= 3 && f[0] == "PHASE" && len(runs) > 0:
			ts := ms(f[1])
			name := ""
			switch {
			case heartbeat.MatchString(l):
			case strings.Contains(l, "ovpkg: running "):
				name = "apt: resolve, download"
			case strings.Contains(l, "ovpkg: checking the archives"):
				name = "gate check"
			case strings.Contains(l, "ovpkg: installing "):
				name = "dpkg"
			case strings.Contains(l, "ovpkg: committing"):
				name = "commit"
			case strings.Contains(l, "installed on the card"):
				name = "end"
			}
			if name != "" && name != lastPhase {
				runs[len(runs)-1][lastPhase] += ts - last
				last, lastPhase = ts, name
			}
		}
	}
	var pairs []string
	for i := range min(len(ov), len(apt)) {
		pairs = append(pairs, strconv.FormatFloat(ov[i]/apt[i], 'f', 2, 64))
	}
	b.Logf("%s: ovpkg ms %v, apt ms %v, pairs x-apt %v (alternating, first pair apt first)", pkg, round(ov), round(apt), pairs)
	phases := map[string][]float64{}
	var own []float64 // ovpkg's own time: all but the package manager's run
	for _, run := range runs {
		for name, v := range run {
			phases[name] = append(phases[name], v)
		}
		own = append(own, run["before the package manager"]+run["gate check"]+run["commit"])
	}
	if len(ov) == 0 || len(apt) == 0 {
		b.Fatalf("no timings: %s", r)
	}
	mo, ma := median(ov), median(apt)
	b.ReportMetric(mo, "ovpkg-ms")
	b.ReportMetric(ma, "apt-ms")
	b.ReportMetric(mo/ma, "x-apt")
	if len(own) > 0 {
		// What ovpkg adds to an apt run of the median's length: the
		// ratio the same load would give both sides (the medians of
		// two noisy series are from different runs).
		b.ReportMetric(median(own), "own-ms")
		b.ReportMetric((ma+median(own))/ma, "x-apt-own")
	}
	for name, v := range phases {
		if name == "end" {
			continue
		}
		b.ReportMetric(median(v), "ms-"+strings.NewReplacer(" ", "-", ",", "", ":", "").Replace(name))
	}
}

// heartbeat matches the progress lines a running phase repeats.
// ("(12s)", "(1m0s)").
var heartbeat = regexp.MustCompile(`\((\d+m)?\d+s\)$`)

func round(v []float64) []int {
	var out []int
	for _, x := range v {
		out = append(out, int(x+0.5))
	}
	return out
}

func ms(ns string) float64 {
	v, _ := strconv.ParseFloat(ns, 64)
	return v / 1e6
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
