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
)

// kernelVersus runs ours b.N times and the baseline every every-th
// iteration, interleaved so that both see the same machine load (other
// tests may be running), and reports the baseline's time per op and the
// ratio ours/baseline as x-<name> (lower is better).
func kernelVersus(b *testing.B, name string, every int, ours, base func()) {
	b.Helper()
	base() // warm up (page cache for the baseline program)
	var baseTime, ourTime time.Duration
	baseRuns := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		ours()
		ourTime += time.Since(t)
		if i%every == 0 {
			b.StopTimer()
			t = time.Now()
			base()
			baseTime += time.Since(t)
			baseRuns++
			b.StartTimer()
		}
	}
	b.StopTimer()
	perBase := float64(baseTime.Nanoseconds()) / float64(baseRuns)
	perOurs := float64(ourTime.Nanoseconds()) / float64(b.N)
	b.ReportMetric(perBase, name+"-ns/op")
	b.ReportMetric(perOurs/perBase, "x-"+name)
}

// losetupCycle is the shell way: losetup --find --show, then losetup -d.
func losetupCycle(b *testing.B, img string) func() {
	return func() {
		out, err := exec.Command("losetup", "--find", "--show",
			"-o", strconv.Itoa(benchOffset), "--sizelimit", strconv.Itoa(benchSizeLimit), img).Output()
		if err != nil {
			b.Fatalf("losetup --find --show: %v", err)
		}
		if out, err := exec.Command("losetup", "-d", strings.TrimSpace(string(out))).CombinedOutput(); err != nil {
			b.Fatalf("losetup -d: %v %s", err, out)
		}
	}
}

// BenchmarkLoopAttachDetach times loop.Attach (offset + size limit) and
// Device.Detach against `losetup --find --show -o --sizelimit` +
// `losetup -d` in the same run; x-losetup is ours/losetup.
func BenchmarkLoopAttachDetach(b *testing.B) {
	img := loopImage(b)
	kernelVersus(b, "losetup", 20, func() {
		d, err := loop.Attach(img, loop.Options{Offset: benchOffset, SizeLimit: benchSizeLimit})
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Detach(); err != nil {
			b.Fatal(err)
		}
	}, losetupCycle(b, img))
}

// BenchmarkLoopAutoclearCycle is the cycle ovmount/eject do: attach with
// autoclear, close (nothing mounts it here), confirm with WaitDetached
// that the kernel cleared it; same losetup baseline.
func BenchmarkLoopAutoclearCycle(b *testing.B) {
	img := loopImage(b)
	kernelVersus(b, "losetup", 20, func() {
		d, err := loop.Attach(img, loop.Options{Offset: benchOffset, SizeLimit: benchSizeLimit, Autoclear: true})
		if err != nil {
			b.Fatal(err)
		}
		d.Close()
		if err := loop.WaitDetached(d, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}, losetupCycle(b, img))
}
