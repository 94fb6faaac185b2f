package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// subhostCycles is how many start/stop cycles of each kind one iteration
// times.
const subhostCycles = 10

// subhostScript times, in a network namespace of its own with a bridge,
// subhostCycles starts (to ready: services started, the command returned)
// and stops of a subhost with one cable on the bridge and no services,
// against the same done by hand: ip netns add, ip link add (veth into the
// namespace, on the bridge, up), unshare (mount, PID, IPC, UTS) with
// mount -t overlay and proc, until it says ready; and kill, ip link del,
// ip netns del. It prints "ours_start NS", "ours_stop NS", "hand_start
// NS", "hand_stop NS".
func subhostScript(dir string) string {
	return fmt.Sprintf(`
D=%s
N=%d
mkdir -p /run/netns && mount -t tmpfs netns /run/netns
mkdir -p $D && mount -t tmpfs -o size=64m scratch $D
ip link add br0 type bridge && ip link set br0 up
mkdir -p $D/s/root $D/s/work $D/s/live $D/h/root $D/h/work $D/h/live
printf 'BASE=.\nNAME=bsub\nSTART=none\nLOG=%%s/log\nCABLES=br0=02:00:5e:00:53:01\n' $D > $D/s/bsub.conf
now() { date +%%s%%N; }
os=0; ot=0; hs=0; ht=0
for i in $(seq $N); do
	t0=$(now); ovpkg subhost start $D/s/bsub.conf >/dev/null
	t1=$(now); ovpkg subhost stop bsub >/dev/null
	t2=$(now); os=$((os + t1 - t0)); ot=$((ot + t2 - t1))
done
for i in $(seq $N); do
	rm -f $D/ready; mkfifo $D/ready
	t0=$(now)
	ip netns add bhand
	ip link add bhand0 type veth peer name eth0 netns bhand
	ip link set bhand0 master br0 up
	ip -n bhand link set lo up
	unshare --net=/run/netns/bhand --mount --pid --ipc --uts --fork --kill-child --propagation unchanged sh -c "
		mount -t overlay bhand -o lowerdir=/,upperdir=$D/h/root,workdir=$D/h/work $D/h/live &&
		mount -t proc proc $D/h/live/proc && echo ready > $D/ready && exec sleep 1000" &
	pid=$!
	read x < $D/ready
	t1=$(now)
	kill -KILL $pid; wait $pid || true
	ip link del bhand0
	until ip netns del bhand 2>/dev/null; do :; done  # the killed child may still hold it a moment
	t2=$(now); hs=$((hs + t1 - t0)); ht=$((ht + t2 - t1))
done
echo "ours_start $((os / N))"
echo "ours_stop $((ot / N))"
echo "hand_start $((hs / N))"
echo "hand_stop $((ht / N))"
`, dir, subhostCycles)
}

// BenchmarkSubhostStartStop: start-to-ready and stop of a subhost (one
// cable on a bridge, no services) against unshare + mount -t overlay + ip
// link add done by hand. x-hand-start and x-hand-stop = ours / by hand.
func BenchmarkSubhostStartStop(b *testing.B) {
	nstest.RequireRoot(b)
	nstest.Need(b, "ip", "unshare", "mkfifo")
	var vals = map[string]float64{}
	for i := 0; i < b.N; i++ {
		dir := nstest.TempDir(b)
		r := nstest.Run(b, "exec unshare --net bash -euo pipefail -c '"+strings.ReplaceAll(subhostScript(dir+"/t"), "'", `'\''`)+"'")
		if r.Code != 0 {
			b.Fatalf("benchmark script: %s", r)
		}
		for _, l := range strings.Split(r.Stdout, "\n") {
			var k string
			var v float64
			if n, _ := fmt.Sscanf(l, "%s %g", &k, &v); n == 2 {
				vals[k] += v
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(vals["ours_start"]/n/1e6, "ms-start")
	b.ReportMetric(vals["ours_stop"]/n/1e6, "ms-stop")
	b.ReportMetric(vals["hand_start"]/n/1e6, "ms-hand-start")
	b.ReportMetric(vals["hand_stop"]/n/1e6, "ms-hand-stop")
	if vals["hand_start"] > 0 && vals["hand_stop"] > 0 {
		b.ReportMetric(vals["ours_start"]/vals["hand_start"], "x-hand-start")
		b.ReportMetric(vals["ours_stop"]/vals["hand_stop"], "x-hand-stop")
	}
}
