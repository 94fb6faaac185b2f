package bench

import (
	"os"
	"os/exec"
	"testing"

	"github.com/ovpkg/ovpkg/busy"
	"github.com/ovpkg/ovpkg/internal/nstest"
	"golang.org/x/sys/unix"
)

// BenchmarkBusyScan times busy.Scan of every process for one mount
// (/dev/shm, which few processes use, so the scan is all the work) against
// `fuser -m /dev/shm` (psmisc), interleaved in the same run; x-fuser =
// ours / fuser. eject runs one such scan before it unmounts.
func BenchmarkBusyScan(b *testing.B) {
	nstest.RequireRoot(b) // other users' /proc/PID/fd are unreadable otherwise
	nstest.Need(b, "fuser")
	const target = "/dev/shm"
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		b.Skip(err)
	}
	devs := []uint64{uint64(st.Dev)}
	procs, _ := os.ReadDir("/proc")
	b.ReportMetric(float64(len(procs)), "proc-entries")
	kernelVersus(b, "fuser", 1, func() {
		if _, err := busy.ScanExcept("/proc", devs, []int{os.Getpid()}); err != nil {
			b.Fatal(err)
		}
	}, func() {
		// fuser exits 1 when nobody uses the mount: that is fine.
		if err := exec.Command("fuser", "-m", target).Run(); err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				b.Fatal(err)
			}
		}
	})
}
