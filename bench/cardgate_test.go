package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/image"
	"github.com/ovpkg/ovpkg/image/ext2"
	"github.com/ovpkg/ovpkg/internal/nstest"
	"github.com/ovpkg/ovpkg/trust"
)

// cardGateScript times ovmount + eject cycles of one card, alternating
// rounds without the setuid gate's memory (no trust directory: the card
// is unknown, nothing is fingerprinted or scanned; the baseline) and with
// it (ovmount: superblock, metadata and privileged-file scan compared
// with the memory; eject: the same scan and the memory rewritten). The
// card holds first that many small files, spread over 100 directories, 10 of
// them setuid (a card after a large install; 0 for an empty card).
func cardGateScript(dir string, files int) string {
	return fmt.Sprintf(`
D=%s
N=%d
F=%d
mount -t tmpfs -o size=512m scratch $D
export OVPKG_CONFIG=$D/ovpkg.conf
TD=$OVPKG_TEST_TRUST_DIR
mkoverlay 256 $D/card.img >/dev/null
echo "MOUNTPOINT=$D/card" >> $OVPKG_CONFIG
R=$D/root
mkdir -p $R/usr/local $R/etc $R/var $R/opt $R/proc; ln -s usr/bin $R/bin
ovmount --root $R >/dev/null
if [ $F -gt 0 ]; then
	for d in $(seq 100); do mkdir -p $R/usr/share/b$d; done
	for i in $(seq $F); do echo $i > $R/usr/share/b$((i %% 100 + 1))/f$i; done
	for i in $(seq 10); do chmod 4755 $R/usr/share/b$i/f$((i + 99)) 2>/dev/null || true; done
fi
eject --root $R >/dev/null
ovmount --root $R > $D/out; grep -c warning $D/out || true
eject --root $R >/dev/null
off=0; on=0
for round in 1 2; do
	unset OVPKG_TEST_TRUST_DIR
	t0=$(date +%%s%%N)
	for i in $(seq $N); do ovmount --root $R >/dev/null; eject --root $R >/dev/null; done
	t1=$(date +%%s%%N)
	export OVPKG_TEST_TRUST_DIR=$TD
	# The rounds without memory changed the card (mount count): approve
	# it once more, untimed, so the timed rounds find it as they left it.
	ovmount --root $R --trust >/dev/null; eject --root $R >/dev/null
	t1=$(date +%%s%%N)
	for i in $(seq $N); do ovmount --root $R >/dev/null; eject --root $R >/dev/null; done
	t2=$(date +%%s%%N)
	off=$((off + t1 - t0)); on=$((on + t2 - t1))
done
ovmount --root $R > $D/out; grep -c warning $D/out || true
eject --root $R >/dev/null
echo "off $(( off / (2 * N) ))"
echo "on $(( on / (2 * N) ))"
umount $D
`, dir, mountCycles/2, files)
}

// BenchmarkOvmountCardGate: what the setuid gate (issue 9 item 2: the
// host's memory of the card) adds to an ovmount + eject cycle, against the
// same cycle without it in the same run, for an empty card and one with
// 10,000 files. ms-added = on - off per cycle; x-cycle = on / off.
func BenchmarkOvmountCardGate(b *testing.B) {
	nstest.RequireRoot(b)
	for _, files := range []int{0, 10000} {
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			var off, on float64
			for i := 0; i < b.N; i++ {
				dir := nstest.TempDir(b)
				r := nstest.Run(b, cardGateScript(dir, files))
				if r.Code != 0 {
					b.Fatalf("benchmark script: %s", r)
				}
				// The card must have been trusted in the timed rounds.
				if !strings.HasPrefix(r.Stdout, "0\n0\n") {
					b.Fatalf("the card was not trusted: %s", r)
				}
				for _, l := range strings.Split(r.Stdout, "\n") {
					var v float64
					if n, _ := fmt.Sscanf(l, "off %g", &v); n == 1 {
						off += v
					}
					if n, _ := fmt.Sscanf(l, "on %g", &v); n == 1 {
						on += v
					}
				}
			}
			n := float64(b.N)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(off/n/1e6, "ms-off/cycle")
			b.ReportMetric(on/n/1e6, "ms-on/cycle")
			b.ReportMetric((on-off)/n/1e6, "ms-added/cycle")
			if off > 0 {
				b.ReportMetric(on/off, "x-cycle")
			}
		})
	}
}

// BenchmarkCardGateParts times, in-process and with a warm cache, the
// parts of the gate for a card tree of 10,000 small files in 100
// directories, 10 of them setuid (on the test's temporary filesystem, not
// a loop-mounted ext2): opening the trust directory and key, the
// superblock fingerprint, and Scan (metadata + privileged files), which
// ovmount and eject each run once per cycle, against a walk that only
// lstats every entry (find -perm /6000) in the same run: x-find.
func BenchmarkCardGateParts(b *testing.B) {
	nstest.RequireRoot(b)
	top := b.TempDir()
	os.Chmod(top, 0o755)
	tdir := filepath.Join(top, "trust")
	card := filepath.Join(top, "card")
	for d := 1; d <= 100; d++ {
		os.MkdirAll(filepath.Join(card, "ovpkg", "layers", "0001", "tree", "usr", "share", fmt.Sprint("b", d)), 0o755)
	}
	os.WriteFile(filepath.Join(card, "ovpkg", "FORMAT"), []byte("ovpkg-card 1\n"), 0o644)
	os.WriteFile(filepath.Join(card, "ovpkg", "stack"), []byte("0001\n"), 0o644)
	for i := 1; i <= 10000; i++ {
		p := filepath.Join(card, "ovpkg", "layers", "0001", "tree", "usr", "share", fmt.Sprint("b", i%100+1), fmt.Sprint("f", i))
		os.WriteFile(p, []byte(fmt.Sprintln(i)), 0o644)
		if i%1000 == 0 {
			unix.Chmod(p, 0o4755)
		}
	}
	img := filepath.Join(top, "card.img")
	p, err := image.Prepare(img, image.Options{Size: 64 * image.MiB})
	if err != nil {
		b.Fatal(err)
	}
	info := p.Info()
	p.Commit()
	raw := make([]byte, ext2.SuperblockSize)
	f, _ := os.Open(img)
	f.ReadAt(raw, info.PartStart+ext2.SuperblockOffset)
	f.Close()
	if _, err := trust.Open(tdir, true); err != nil {
		b.Fatal(err)
	}
	var open, super, scan, find time.Duration
	var n int
	for i := 0; i < b.N; i++ {
		// The baseline: what find CARD -perm /6000 does (a walk and an
		// lstat per entry), in the same run.
		tf := time.Now()
		k := 0
		filepath.WalkDir(card, func(p string, d os.DirEntry, err error) error {
			var st unix.Stat_t
			if err == nil && unix.Lstat(p, &st) == nil && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 && !d.IsDir() {
				k++
			}
			return err
		})
		find += time.Since(tf)
		if k != 10 {
			b.Fatalf("find found %d", k)
		}
		t0 := time.Now()
		st, err := trust.Open(tdir, false)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		c, err := st.Super(raw)
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := st.Scan(card, &c); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		open, super, scan = open+t1.Sub(t0), super+t2.Sub(t1), scan+t3.Sub(t2)
		n = c.PrivCount
	}
	if n != 10 {
		b.Fatalf("%d privileged files found, want 10", n)
	}
	N := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(open.Microseconds())/N, "us-open")
	b.ReportMetric(float64(super.Microseconds())/N, "us-super")
	b.ReportMetric(float64(scan.Microseconds())/N/1e3, "ms-scan-10k")
	b.ReportMetric(float64(find.Microseconds())/N/1e3, "ms-find-10k")
	b.ReportMetric(float64(scan)/float64(find), "x-find")
}
