package bench

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/pkgmgr/debtest"
)

// BenchmarkPkgInstallRemove times `ovpkg install -y ./pkg.deb` + `ovpkg
// remove -y pkg` against `apt-get install -y ./pkg.deb` + `apt-get remove
// -y pkg` of the same package on the same throwaway card (mounted over the
// real /usr /etc /var inside a private mount namespace), alternating, in
// one run. x-apt = ovpkg time / apt-get time (target <= 1.15);
// x-apt-install-only compares the installs alone (ovpkg remove runs dpkg
// --remove, which skips apt's package lists, so the pair flatters it). Also
// reports ovpkg's own peak RSS (VmHWM of the ovpkg process, not of
// apt/dpkg; target < 32 MB).
func BenchmarkPkgInstallRemove(b *testing.B) {
	nstest.RequireRoot(b)
	nstest.Need(b, "dpkg-deb", "apt-get")
	dir := nstest.TempDir(b)
	deb := debtest.Build(b, b.TempDir(), debtest.Spec{Name: "ovbench-pkg", Files: map[string]debtest.File{
		"usr/bin/ovbench-pkg":              debtest.Program("bench"),
		"usr/share/ovbench-pkg/data":       {Size: 256 << 10},
		"etc/ovbench-pkg.conf":             {Data: "x=1\n"},
		"usr/share/doc/ovbench-pkg/README": {Data: "bench\n"},
	}, Conffiles: []string{"/etc/ovbench-pkg.conf"}})
	script := fmt.Sprintf(`
D=%s
export DEBIAN_FRONTEND=noninteractive OVPKG_CONFIG=$D/ovpkg.conf
mount -t tmpfs -o size=256m scratch $D
echo "MOUNTPOINT=$D/card" > $OVPKG_CONFIG
echo "OVERLAY_DIRS=usr etc var" >> $OVPKG_CONFIG
mkoverlay 64 $D/card.img >/dev/null
ovmount >/dev/null 2>&1
rm -f /usr/sbin/policy-rc.d  # on the card only: both runs without the base's policy
now() { date +%%s%%N; }
for i in $(seq %d); do
  t0=$(now); OVPKG_TEST_REPORT_RSS=1 ovpkg install -y %s >/dev/null 2>$D/err1; ti=$(now); OVPKG_TEST_REPORT_RSS=1 ovpkg remove -y ovbench-pkg >/dev/null 2>$D/err2; t1=$(now)
  grep -h ovpkg-vmhwm-kb $D/err1 $D/err2 | sed 's/^/RSS /'
  t2=$(now); apt-get install -y %s >/dev/null 2>&1; tj=$(now); apt-get remove -y ovbench-pkg >/dev/null 2>&1; t3=$(now)
  echo "TIME $((t1-t0)) $((t3-t2)) $((ti-t0)) $((tj-t2))"
done
eject >/dev/null
`, dir, b.N, deb, deb)
	b.ResetTimer()
	r := nstest.RunTimeout(b, 30*time.Minute, script)
	b.StopTimer()
	if r.Code != 0 {
		b.Fatalf("bench script: %s", r)
	}
	var ov, apt, ovi, apti, n, rss float64
	for _, l := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 5 && f[0] == "TIME":
			v := make([]float64, 4)
			for i := range v {
				v[i], _ = strconv.ParseFloat(f[i+1], 64)
			}
			ov, apt, ovi, apti, n = ov+v[0], apt+v[1], ovi+v[2], apti+v[3], n+1
		case len(f) == 3 && f[0] == "RSS":
			if v, _ := strconv.ParseFloat(f[2], 64); v > rss {
				rss = v
			}
		}
	}
	if n == 0 || apt == 0 {
		b.Fatalf("no timings: %s", r)
	}
	b.ReportMetric(ov/n/1e6, "ovpkg-ms/op")
	b.ReportMetric(apt/n/1e6, "apt-ms/op")
	b.ReportMetric(ov/apt, "x-apt")
	b.ReportMetric(ovi/apti, "x-apt-install-only")
	b.ReportMetric(rss/1024, "ovpkg-peak-RSS-MB")
}
