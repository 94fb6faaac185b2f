package bench

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// mountCycles is how many ovmount+eject cycles (and as many shell
// cycles) one benchmark iteration times.
const mountCycles = 20

// mountScript sets up a scratch card and root (usr etc var opt, bin as a
// link into usr: the default directory set there is the four real
// directories), then times mountCycles ovmount+eject cycles and
// mountCycles cycles of the shell equivalent (losetup, mount, umount,
// losetup -d) in the same namespace, and measures peak RSS of one ovmount
// and one eject with GNU time. It prints "ours NS", "shell NS",
// "rss_ovmount KB", "rss_eject KB".
func mountScript(dir string, haveTime bool) string {
	timeCmd := ""
	if haveTime {
		timeCmd = `
/usr/bin/time -f 'rss_ovmount %M' -o $D/rss1 ovmount --root $R >/dev/null
/usr/bin/time -f 'rss_eject %M' -o $D/rss2 eject --root $R >/dev/null
cat $D/rss1 $D/rss2`
	}
	return fmt.Sprintf(`
D=%s
N=%d
mount -t tmpfs -o size=256m scratch $D
export OVPKG_CONFIG=$D/ovpkg.conf
mkoverlay 64 $D/card.img >/dev/null
echo "MOUNTPOINT=$D/card" >> $OVPKG_CONFIG
R=$D/root
mkdir -p $R/usr/local $R/etc $R/var $R/opt $R/proc; ln -s usr/bin $R/bin
# First mount creates the layout; not timed.
ovmount --root $R >/dev/null; eject --root $R >/dev/null
L=$D/card/ovpkg/layers/0001
t0=$(date +%%s%%N)
for i in $(seq $N); do
	ovmount --root $R >/dev/null
	eject --root $R >/dev/null
done
t1=$(date +%%s%%N)
for i in $(seq $N); do
	# Retry like loop.Attach does: another process may take or remove the
	# free device losetup picked (ENXIO/EBUSY) on a busy machine.
	for try in 1 2 3 4 5 6 7 8 9 10; do
		dev=$(losetup -f --show -o 1048576 --sizelimit 66060288 $D/card.img 2>/dev/null) && break
	done
	mount -t ext2 -o noatime,nosuid,nodev,noexec,errors=remount-ro $dev $D/card
	for d in usr etc var opt; do
		mount -t overlay ovpkg -o lowerdir=$R/$d,upperdir=$L/tree/$d,workdir=$L/work/$d,index=off,metacopy=off,redirect_dir=nofollow,xino=auto $R/$d
	done
	for d in opt var etc usr; do umount $R/$d; done
	sync -f $D/card
	umount $D/card
	losetup -d $dev
done
t2=$(date +%%s%%N)
echo "ours $(( (t1 - t0) / N ))"
echo "shell $(( (t2 - t1) / N ))"
%s
umount $D
`, dir, mountCycles, timeCmd)
}

// BenchmarkMountEjectCycle: ovmount + eject (default directory set of a
// scratch root: usr etc var opt) against a shell script doing the same
// with losetup, mount and umount. x-shell = ours / shell (target <= 0.5).
// rss-ovmount-KB and rss-eject-KB: peak RSS (target < 16 MB).
func BenchmarkMountEjectCycle(b *testing.B) {
	nstest.RequireRoot(b)
	nstest.Need(b, "losetup", "mount", "umount")
	_, err := exec.LookPath("/usr/bin/time")
	haveTime := err == nil
	var ours, shell, rss1, rss2 float64
	for i := 0; i < b.N; i++ {
		dir := nstest.TempDir(b)
		r := nstest.Run(b, mountScript(dir, haveTime))
		if r.Code != 0 {
			b.Fatalf("benchmark script: %s", r)
		}
		vals := map[string]float64{}
		for _, l := range strings.Split(r.Stdout, "\n") {
			var k string
			var v float64
			if n, _ := fmt.Sscanf(l, "%s %g", &k, &v); n == 2 {
				vals[k] = v
			}
		}
		ours += vals["ours"]
		shell += vals["shell"]
		if vals["rss_ovmount"] > rss1 {
			rss1 = vals["rss_ovmount"]
		}
		if vals["rss_eject"] > rss2 {
			rss2 = vals["rss_eject"]
		}
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ours/n/1e6, "ms-ours/cycle")
	b.ReportMetric(shell/n/1e6, "ms-shell/cycle")
	if shell > 0 {
		b.ReportMetric(ours/shell, "x-shell")
	}
	if haveTime {
		b.ReportMetric(rss1, "rss-ovmount-KB")
		b.ReportMetric(rss2, "rss-eject-KB")
	}
}
