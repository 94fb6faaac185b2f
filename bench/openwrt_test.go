package bench

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/owrttest"
)

// owrtMetrics collects "TIME label seconds" and "ovpkg-vmhwm-kb: N"
// lines (busybox time -f, OVPKG_TEST_REPORT_RSS) from a script's output.
type owrtMetrics struct {
	time map[string][]float64
	rss  map[string]float64 // label -> max VmHWM (KiB)
}

func parseOwrt(out string) owrtMetrics {
	m := owrtMetrics{time: map[string][]float64{}, rss: map[string]float64{}}
	label := ""
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "STEP":
			label = f[1]
		case len(f) == 3 && f[0] == "TIME":
			v, _ := strconv.ParseFloat(f[2], 64)
			m.time[f[1]] = append(m.time[f[1]], v)
		case len(f) == 2 && f[0] == "ovpkg-vmhwm-kb:":
			v, _ := strconv.ParseFloat(f[1], 64)
			if v > m.rss[label] {
				m.rss[label] = v
			}
		}
	}
	return m
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	if len(v) == 0 {
		return 0
	}
	return s / float64(len(v))
}

// BenchmarkOpenWrtInstallIpk: `ovpkg install -y big` of a 50 MB .ipk
// (incompressible payload) from a local feed, in the busybox root with
// the real opkg and a card mounted, against plain `opkg install big` into
// the same root (through the same overlays), alternating, each followed by
// a remove. Reports ovpkg's own peak RSS (VmHWM of the ovpkg process, not
// opkg's; target <= 16 MB: the device has 32 MB) and x-opkg = ovpkg
// install time / opkg install time.
func BenchmarkOpenWrtInstallIpk(b *testing.B) {
	r := owrttest.NewRoot(b, owrttest.Options{Opkg: true})
	r.Feed(b, "local", owrttest.Ipk{Name: "big", Files: map[string]owrttest.File{
		"usr/share/big/payload": {Size: 50 << 20}, "usr/bin/big": owrttest.Program("big")}})
	script := fmt.Sprintf(`
opkg update >/dev/null
mkoverlay 256 /mnt/card.img >/dev/null
ovmount >/dev/null
for i in $(seq %d); do
  echo STEP install >&2
  time -f "TIME ovpkg-install %%e" env OVPKG_TEST_REPORT_RSS=1 ovpkg install -y big >/dev/null
  echo STEP remove >&2
  OVPKG_TEST_REPORT_RSS=1 ovpkg remove -y big >/dev/null
  time -f "TIME opkg-install %%e" opkg install big >/dev/null
  opkg remove big >/dev/null
done
ovpkg eject >/dev/null
`, b.N)
	b.ResetTimer()
	res := r.RunTimeout(b, 30*time.Minute, script)
	b.StopTimer()
	if res.Code != 0 {
		b.Fatalf("bench script: %s", res)
	}
	m := parseOwrt(res.Stdout + res.Stderr)
	ov, op := mean(m.time["ovpkg-install"]), mean(m.time["opkg-install"])
	if ov == 0 || op == 0 || m.rss["install"] == 0 {
		b.Fatalf("no figures: %s", res)
	}
	b.ReportMetric(ov*1000, "ovpkg-install-ms/op")
	b.ReportMetric(op*1000, "opkg-install-ms/op")
	b.ReportMetric(ov/op, "x-opkg")
	b.ReportMetric(m.rss["install"]/1024, "install-peak-RSS-MB")
	b.ReportMetric(m.rss["remove"]/1024, "remove-peak-RSS-MB")
}

// BenchmarkOpenWrtFlattenDedupe30k: a card holding 30 000 files (15 000
// copies of base files written through the overlay, 15 000 of its own) in
// the busybox root: ovpkg dedupe (removes the 15 000 copies) and ovpkg
// flatten of the card, ovpkg's own peak RSS for each (target <= 16 MB),
// flatten against busybox `cp -a` of the card's layer tree (x-cp), and
// flatten with its progress (a counting walk first) against --quiet
// (x-quiet-progress).
func BenchmarkOpenWrtFlattenDedupe30k(b *testing.B) {
	r := owrttest.NewRoot(b, owrttest.Options{Opkg: true})
	script := fmt.Sprintf(`
gen() { mkdir -p $1; i=0; while [ $i -lt $2 ]; do echo "file $i of $1" > $1/f$i; i=$((i+1)); done; }
gen /usr/share/base 15000
for i in $(seq %d); do
  rm -f /mnt/card.img /etc/ovpkg.conf
  mkoverlay 512 /mnt/card.img >/dev/null
  ovmount >/dev/null
  gen /usr/share/own 15000
  # touch copies every base file up onto the card, identical but for mtime
  find /usr/share/base -type f -exec touch {} +
  echo STEP flatten >&2
  time -f "TIME flatten %%e" env OVPKG_TEST_REPORT_RSS=1 ovpkg flatten --to /mnt/flat.img --quiet >/dev/null
  rm -f /mnt/flat.img
  # the same with progress (what a user sees by default): one more walk, to count
  echo STEP flatten-progress >&2
  time -f "TIME flatten-progress %%e" env OVPKG_TEST_REPORT_RSS=1 ovpkg flatten --to /mnt/flat.img >/dev/null 2>/tmp/flatten.err
  grep -v '^flatten: ' /tmp/flatten.err >&2 || true
  rm -f /mnt/flat.img
  echo STEP cp >&2
  time -f "TIME cp %%e" cp -a /overlay/ovpkg/layers /mnt/layers-copy
  rm -rf /mnt/layers-copy
  echo STEP dedupe >&2
  time -f "TIME dedupe %%e" env OVPKG_TEST_REPORT_RSS=1 ovpkg dedupe
  ovpkg eject >/dev/null
done
`, b.N)
	b.ResetTimer()
	res := r.RunTimeout(b, 40*time.Minute, script)
	b.StopTimer()
	if res.Code != 0 {
		b.Fatalf("bench script: %s", res)
	}
	m := parseOwrt(res.Stdout + res.Stderr)
	if m.rss["flatten"] == 0 || m.rss["dedupe"] == 0 || mean(m.time["cp"]) == 0 {
		b.Fatalf("no figures: %s", res)
	}
	b.ReportMetric(mean(m.time["flatten"])*1000, "flatten-ms/op")
	b.ReportMetric(mean(m.time["flatten"])/mean(m.time["cp"]), "x-cp")
	b.ReportMetric(mean(m.time["flatten-progress"])/mean(m.time["flatten"]), "x-quiet-progress")
	b.ReportMetric(m.rss["flatten-progress"]/1024, "flatten-progress-peak-RSS-MB")
	b.ReportMetric(mean(m.time["dedupe"])*1000, "dedupe-ms/op")
	b.ReportMetric(m.rss["flatten"]/1024, "flatten-peak-RSS-MB")
	b.ReportMetric(m.rss["dedupe"]/1024, "dedupe-peak-RSS-MB")
}
