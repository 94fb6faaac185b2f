package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/loop"
)

// loopImage is an 8 MiB sparse file attached with a 1 MiB offset and a
// 4 MiB size limit, as ovmount attaches a card's partition.
func loopImage(b *testing.B) string {
	b.Helper()
	nstest.RequireRoot(b)
	nstest.Need(b, "losetup")
	img := filepath.Join(nstest.TempDir(b), "card.img")
	f, err := os.Create(img)
	if err != nil {
		b.Fatal(err)
	}
	f.Truncate(8 << 20)
	f.Close()
	return img
}

const (
	benchOffset    = 1 << 20
	benchSizeLimit = 4 << 20
	// baselineRuns is how many losetup cycles measure the baseline (each
	// is two fork+execs, so b.N of them would take long).
	baselineRuns = 50
)

// losetupCycle is the shell way: losetup --find --show, then losetup -d.
func losetupCycle(b *testing.B, img string) {
	out, err := exec.Command("losetup", "--find", "--show",
		"-o", strconv.Itoa(benchOffset), "--sizelimit", strconv.Itoa(benchSizeLimit), img).Output()
	if err != nil {
		b.Fatalf("losetup --find --show: %v", err)
	}
	if out, err := exec.Command("losetup", "-d", strings.TrimSpace(string(out))).CombinedOutput(); err != nil {
		b.Fatalf("losetup -d: %v %s", err, out)
	}
}

func baseline(b *testing.B, img string) time.Duration {
	start := time.Now()
	for i := 0; i < baselineRuns; i++ {
		losetupCycle(b, img)
	}
	return time.Since(start) / baselineRuns
}

// BenchmarkLoopAttachDetach times loop.Attach (offset + size limit) and
// Device.Detach against `losetup --find --show -o --sizelimit` +
// `losetup -d` in the same run; x-losetup is ours/losetup (lower is
// better).
func BenchmarkLoopAttachDetach(b *testing.B) {
	img := loopImage(b)
	base := baseline(b, img)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := loop.Attach(img, loop.Options{Offset: benchOffset, SizeLimit: benchSizeLimit})
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Detach(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	ours := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(base.Nanoseconds()), "losetup-ns/op")
	b.ReportMetric(float64(ours)/float64(base), "x-losetup")
}

// BenchmarkLoopAutoclearCycle is the cycle ovmount/eject do: attach with
// autoclear, close (nothing mounts it here), confirm with WaitDetached
// that the kernel cleared it; same losetup baseline.
func BenchmarkLoopAutoclearCycle(b *testing.B) {
	img := loopImage(b)
	base := baseline(b, img)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := loop.Attach(img, loop.Options{Offset: benchOffset, SizeLimit: benchSizeLimit, Autoclear: true})
		if err != nil {
			b.Fatal(err)
		}
		d.Close()
		if err := loop.WaitDetached(d, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	ours := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(base.Nanoseconds()), "losetup-ns/op")
	b.ReportMetric(float64(ours)/float64(base), "x-losetup")
}
