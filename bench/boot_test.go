package bench

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/qemutest"
)

// bootSample is one boot's timings (seconds since the kernel started).
type bootSample struct {
	real, handoff float64 // the real init's first line; from switch_root to it
	goStart       float64 // switch_root to init-overlay's first clock reading
	own           float64 // init-overlay's own run (T_EXEC-T_START)
	phases        string
}

func sample(r *qemutest.Result) bootSample {
	s := bootSample{real: r.Real, handoff: r.Real - r.Switch, phases: r.State["PHASES_MS"]}
	if v, err := strconv.ParseFloat(r.State["T_START_MS"], 64); err == nil {
		s.goStart = v/1000 - r.Switch
	}
	if v, err := strconv.ParseFloat(r.Ms("T_EXEC_MS", "T_START_MS"), 64); err == nil {
		s.own = v / 1000
	}
	return s
}

func bootMedian(xs []bootSample, f func(bootSample) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	sort.Float64s(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// BenchmarkInitOverlayBoot: time from kernel start to the real init, with
// and without init-overlay, in the same run (boots interleaved: plain,
// tmpfs, card), Debian's kernel under QEMU/TCG with the test initramfs.
// The baseline is the same initramfs switch_rooting straight into
// /sbin/init. Timestamps are the kernel's (printk time of
// "QEMUTEST switch_root" and of the real init's first kmsg line), so
// QEMU's own start does not count. Reported (medians): ms-added-tmpfs /
// ms-added-card = (switch_root to real init with init-overlay) minus
// (the same without); pct-tmpfs / pct-card = that over the whole span
// from kernel start to the real init (target < 10 % for tmpfs);
// go-start-ms = switch_root to init-overlay's first instruction of its
// own (exec of the static binary, Go runtime and package init);
// own-ms-* = init-overlay's own work; the card mode's phases are logged.
func BenchmarkInitOverlayBoot(b *testing.B) {
	r := qemutest.NewRig(b)
	disk, conf := r.Card(b, nil)
	rootTmpfs := r.Root(b, "BOOT_UPPER=tmpfs\n", nil, nil)
	rootCard := r.Root(b, conf, nil, nil)
	// The first card boot creates the layout; not counted.
	r.BootStep(b, "card-warmup", "", "none", rootCard, disk)
	var plain, tmpfs, card []bootSample
	for i := 0; i < b.N; i++ {
		plain = append(plain, sample(r.BootStep(b, fmt.Sprintf("plain-%d", i), "init=/sbin/init", "none", rootTmpfs)))
		t := r.BootStep(b, fmt.Sprintf("tmpfs-%d", i), "", "none", rootTmpfs)
		t.Want(b, "STATE", "ok", "UPPER", "tmpfs")
		tmpfs = append(tmpfs, sample(t))
		c := r.BootStep(b, fmt.Sprintf("card-%d", i), "", "none", rootCard, disk)
		c.Want(b, "STATE", "ok", "UPPER", "card")
		card = append(card, sample(c))
	}
	hand := func(s bootSample) float64 { return s.handoff }
	real := func(s bootSample) float64 { return s.real }
	base := bootMedian(plain, hand)
	addT := bootMedian(tmpfs, hand) - base
	addC := bootMedian(card, hand) - base
	b.ReportMetric(addT*1000, "ms-added-tmpfs")
	b.ReportMetric(100*addT/bootMedian(tmpfs, real), "pct-tmpfs")
	b.ReportMetric(addC*1000, "ms-added-card")
	b.ReportMetric(100*addC/bootMedian(card, real), "pct-card")
	b.ReportMetric(1000*bootMedian(append(tmpfs, card...), func(s bootSample) float64 { return s.goStart }), "go-start-ms")
	b.ReportMetric(1000*bootMedian(tmpfs, func(s bootSample) float64 { return s.own }), "own-ms-tmpfs")
	b.ReportMetric(1000*bootMedian(card, func(s bootSample) float64 { return s.own }), "own-ms-card")
	var ph []string
	for _, c := range card {
		ph = append(ph, c.phases)
	}
	b.Logf("kernel start to real init (median): plain %.3f s, tmpfs %.3f s, card %.3f s; switch_root to real init: plain %.0f ms, tmpfs %.0f ms, card %.0f ms; card phases (ms): %s",
		bootMedian(plain, real), bootMedian(tmpfs, real), bootMedian(card, real), base*1000, bootMedian(tmpfs, hand)*1000, bootMedian(card, hand)*1000, strings.Join(ph, " | "))
}
