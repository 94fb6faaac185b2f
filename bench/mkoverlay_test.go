package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// Card sizes the mkoverlay benchmark compares, in MiB.
var mkoverlaySizes = []struct {
	name string
	mib  int64
}{{"128MiB", 128}, {"1GiB", 1024}, {"16GiB", 16384}}

// shellRuns is how many times the best shell pipeline is timed per size.
const shellRuns = 3

// seedScript is the seed tool's pipeline: zero-fill the whole image with
// dd, partition it with a scripted fdisk, attach the partition to a loop
// device and run mke2fs on it (root), or mke2fs -E offset= without root.
const seedScript = `set -e
rm -f "$IMG"
dd if=/dev/zero of="$IMG" bs=1M count="$MIB" status=none
printf 'o\nn\np\n1\n\n\nw\n' | fdisk "$IMG" >/dev/null
if [ "$(id -u)" = 0 ]; then
  L=$(losetup --offset 1048576 --sizelimit $(( (MIB-1)*1024*1024 )) --show -f "$IMG")
  mke2fs -q -F -t ext2 -L ovpkg "$L"; losetup -d "$L"
else
  mke2fs -q -F -t ext2 -L ovpkg -E offset=1048576 "$IMG" $(( (MIB-1)*1024 ))k
fi
`

// shellScript is the best shell pipeline: a sparse file, sfdisk, and
// mke2fs writing into the partition through an offset.
const shellScript = `set -e
rm -f "$IMG"
truncate -s "${MIB}M" "$IMG"
echo '2048,,83' | sfdisk -q "$IMG"
mke2fs -q -F -t ext2 -L ovpkg -E offset=1048576 "$IMG" $(( (MIB-1)*1024 ))k
`

func runScript(b *testing.B, script, img string, mib int64) time.Duration {
	b.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "IMG="+img, fmt.Sprintf("MIB=%d", mib), "LC_ALL=C")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pipeline failed: %v\n%s", err, out)
	}
	return time.Since(start)
}

func diskBytes(b *testing.B, path string) float64 {
	b.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		b.Fatal(err)
	}
	return float64(st.Blocks * 512)
}

// BenchmarkMkoverlay times the built mkoverlay (exec of bin/mkoverlay,
// config written, image fsynced) against the seed pipeline (dd + fdisk +
// losetup + mke2fs; timed once per size, as it writes the whole size)
// and the best shell pipeline (truncate + sfdisk + mke2fs -E offset=;
// timed shellRuns times) at 128 MiB, 1 GiB and 16 GiB, in one run.
// Metrics: seed-ns/op and shell-ns/op (baselines), x-seed and x-shell
// (mkoverlay time / baseline time, as every ovpkg benchmark reports its
// ratio: below 1 means mkoverlay is faster), and the bytes each image
// occupies on disk (st_blocks*512).
// Set OVPKG_BENCH_SKIP_SEED_16G=1 to skip the 16 GiB dd (it writes
// 16 GiB and takes a minute or more on slow disks).
func BenchmarkMkoverlay(b *testing.B) {
	nstest.Need(b, "sfdisk", "fdisk", "mke2fs", "dd", "truncate")
	mk := filepath.Join(nstest.Bin(b), "mkoverlay")
	for _, sz := range mkoverlaySizes {
		b.Run(sz.name, func(b *testing.B) {
			dir := nstest.TempDir(b)
			conf := filepath.Join(dir, "ovpkg.conf")
			img := filepath.Join(dir, "card.img")
			b.StopTimer()

			var seed time.Duration
			var seedDisk float64
			skipSeed := sz.mib > 1024 && os.Getenv("OVPKG_BENCH_SKIP_SEED_16G") != ""
			if !skipSeed {
				seed = runScript(b, seedScript, img, sz.mib)
				seedDisk = diskBytes(b, img)
				os.Remove(img)
			}
			var shell time.Duration
			for i := 0; i < shellRuns; i++ {
				shell += runScript(b, shellScript, img, sz.mib)
			}
			shell /= shellRuns
			shellDisk := diskBytes(b, img)
			os.Remove(img)

			size := fmt.Sprintf("%d", sz.mib)
			b.ResetTimer()
			b.StartTimer()
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(mk, "--force", "--config", conf, size, img)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("mkoverlay: %v\n%s", err, out)
				}
			}
			b.StopTimer()
			ours := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(diskBytes(b, img), "disk-B")
			b.ReportMetric(float64(shell.Nanoseconds()), "shell-ns/op")
			b.ReportMetric(float64(ours)/float64(shell), "x-shell")
			b.ReportMetric(shellDisk, "shell-disk-B")
			if !skipSeed {
				b.ReportMetric(float64(seed.Nanoseconds()), "seed-ns/op")
				b.ReportMetric(float64(ours)/float64(seed), "x-seed")
				b.ReportMetric(seedDisk, "seed-disk-B")
			}
			os.Remove(img)
		})
	}
}
