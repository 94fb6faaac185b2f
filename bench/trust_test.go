package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/internal/trustpath"
	"github.com/ovpkg/ovpkg/loop"
)

// BenchmarkOvmountTrustChecks: what issue 9's host-side checks add to one
// ovmount + eject cycle, against that cycle (the baseline, timed in the
// same run as in BenchmarkMountEjectCycle). Timed in-process on the same
// kind of files: before, a plain read and parse of the config and one
// loop-device listing; now, config.Load (directory chain, O_NOFOLLOW,
// fstat, then the same parse), RUN_DIR's checks (four per cycle: lock,
// record read, record write, record removal), the image's flock, and two
// loop-device listings (before and after attach; every bound device on
// this machine is listed, loop-devices says how many). x-cycle = added /
// cycle.
func BenchmarkOvmountTrustChecks(b *testing.B) {
	nstest.RequireRoot(b)
	dir := b.TempDir()
	conf := filepath.Join(dir, "ovpkg.conf")
	img := filepath.Join(dir, "card.img")
	os.WriteFile(conf, []byte("SD_ROOTFS="+img+"\nSD_UUID=x\nMOUNTPOINT=/overlay\n"), 0o644)
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		b.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	os.Mkdir(runDir, 0o700)
	var st unix.Stat_t
	unix.Stat(img, &st)
	devs, _ := loop.List()

	const rounds = 200
	var plain, checks time.Duration
	var cycle float64
	for i := 0; i < b.N; i++ {
		// What ovmount did before: a plain read and parse of the config,
		// one loop-device listing before attaching.
		t0 := time.Now()
		for k := 0; k < rounds; k++ {
			data, err := os.ReadFile(conf)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := config.Parse(conf, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			if _, err := loop.LookupID(uint64(st.Dev), uint64(st.Ino)); err != nil {
				b.Fatal(err)
			}
		}
		plain += time.Since(t0)
		t0 = time.Now()
		for k := 0; k < rounds; k++ {
			if _, err := config.Load(conf); err != nil {
				b.Fatal(err)
			}
			for j := 0; j < 4; j++ {
				if _, err := trustpath.Dir(runDir); err != nil {
					b.Fatal(err)
				}
			}
			f, err := os.OpenFile(img, os.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
				b.Fatal(err)
			}
			f.Close()
			for j := 0; j < 2; j++ {
				if _, err := loop.LookupID(uint64(st.Dev), uint64(st.Ino)); err != nil {
					b.Fatal(err)
				}
			}
		}
		checks += time.Since(t0)

		d := nstest.TempDir(b)
		r := nstest.Run(b, mountScript(d, false))
		if r.Code != 0 {
			b.Fatalf("benchmark script: %s", r)
		}
		for _, l := range strings.Split(r.Stdout, "\n") {
			var v float64
			if n, _ := fmt.Sscanf(l, "ours %g", &v); n == 1 {
				cycle += v
			}
		}
	}
	n := float64(b.N)
	added := float64(checks-plain) / n / rounds
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(added/1e3, "us-added/cycle")
	b.ReportMetric(cycle/n/1e6, "ms-cycle")
	b.ReportMetric(float64(len(devs)), "loop-devices")
	if cycle > 0 {
		b.ReportMetric(added/(cycle/n), "x-cycle")
	}
}
