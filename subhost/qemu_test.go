package subhost_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/qemutest"
)

// vmStep runs inside a VM booted with Debian's kernel, a pure cgroup v2
// hierarchy (cgroup_no_v1=all, cgroup2 on /sys/fs/cgroup) and the
// modules veth, bridge, 8021q and overlay: what the test machine's own
// kernel (cgroup hybrid, no 8021q) cannot show. Every value is read from
// outside the subhost with the kernel's own files (cgroup files,
// /proc/PID/cgroup, /proc/net/vlan/config), never from ovpkg's record.
// Lines starting with a capitalised marker are checked again by the Go
// side.
const vmStep = `
mount -t tmpfs -o size=96m scratch /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
CG=/sys/fs/cgroup
grep -q ' - cgroup ' /proc/self/mountinfo && fail "a cgroup v1 hierarchy is mounted"
echo "CONTROLLERS $(cat $CG/cgroup.controllers)"
for m in overlay veth bridge 8021q; do modprobe $m || fail "modprobe $m"; done
echo "MODULES $(lsmod | awk 'NR>1 {print $1}' | sort | tr '\n' ' ')"
newhost() {
	n=$1; shift
	mkdir -p /tmp/$n/root /tmp/$n/work /tmp/$n/live
	{ echo BASE=.; echo LOG=/tmp/$n.log; for l in "$@"; do echo "$l"; done; } > /tmp/$n/$n.conf
}
initpid() { sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p' /run/ovpkg/subhosts/$1.json; }
trap 'for n in lim vl; do ovpkg subhost stop $n >/dev/null 2>&1 || true; done; cat /tmp/lim.log /tmp/vl.log 2>/dev/null || true' EXIT

# --- 1. limits -------------------------------------------------------
# START=hold: /etc/init.d/hold leaves a sleep behind (a service).
newhost lim START=hold MEMORY=32M CPU=50% PIDS=20
ovpkg subhost check /tmp/lim/lim.conf
ovpkg subhost start /tmp/lim/lim.conf
L=$CG/ovpkg/lim
echo "LIMITS memory.max=$(cat $L/memory.max) cpu.max=$(cat $L/cpu.max) pids.max=$(cat $L/pids.max)"
echo "SUBTREE root=[$(cat $CG/cgroup.subtree_control)] ovpkg=[$(cat $CG/ovpkg/cgroup.subtree_control)]"
init=$(initpid lim)
test -n "$init" || fail "no init_pid in the record"
echo "INITCG $(cat /proc/$init/cgroup)"
grep -qx "$init" $L/cgroup.procs || fail "PID 1 $init is not in $L"
echo "INENTER $(ovpkg subhost enter lim -- cat /proc/self/cgroup)"

# Memory: 8 MiB fits, 48 MiB (dd's buffer, every page written by the
# read from /dev/zero) is OOM-killed inside the cgroup.
ovpkg subhost enter lim -- dd if=/dev/zero of=/dev/null bs=8M count=2
rc=0; ovpkg subhost enter lim -- dd if=/dev/zero of=/dev/null bs=48M count=1 || rc=$?
echo "MEMORY rc=$rc $(grep -E '^(oom|oom_kill) ' $L/memory.events | tr '\n' ' ')"

# tmpfs pages are charged to the cgroup but belong to no process:
# filling the subhost's /run past MEMORY makes the OOM killer choose by
# the processes' own memory, where PID 1 (ovpkg, a Go program) is the
# biggest. It must not be the one: PID 1 has oom_score_adj -999, what it
# starts gets its original value back.
hold=
for p in $(cat $L/cgroup.procs); do [ "$(cat /proc/$p/comm)" = sleep ] && hold=$p; done
test -n "$hold" || fail "the hold service's sleep is not in $L"
echo "OOMADJ init=$(cat /proc/$init/oom_score_adj) service=$(cat /proc/$hold/oom_score_adj) rss_init=$(sed -n 's/^VmRSS: *//p' /proc/$init/status)"
rc=0; ovpkg subhost enter lim -- dd if=/dev/zero of=/run/fill bs=64k count=1000 || rc=$?
alive=dead; [ -e /proc/$init ] && alive=alive
echo "FILL rc=$rc init=$alive $(grep '^oom_kill ' $L/memory.events)"
test $alive = alive || fail "the OOM killer chose the subhost's PID 1"
ovpkg subhost enter lim -- rm /run/fill

# CPU: a busy loop for 1.5 s at 50% is throttled.
t0=$(sed -n 's/^nr_throttled //p' $L/cpu.stat)
ovpkg subhost enter lim -- timeout 1.5 sh -c 'while :; do :; done' || true
echo "CPU nr_throttled $t0 -> $(sed -n 's/^nr_throttled //p' $L/cpu.stat) $(grep -E '^(usage|throttled)_usec ' $L/cpu.stat | tr '\n' ' ')"

# Pids: a fork loop of 40 sleeps; the shell dies when fork fails.
rc=0; ovpkg subhost enter lim -- sh -c 'i=0; while [ $i -lt 40 ]; do sleep 1000 & i=$((i+1)); echo $i; done' > /tmp/forked 2>/tmp/fork.err || rc=$?
echo "PIDS rc=$rc forked=$(tail -n1 /tmp/forked) current=$(cat $L/pids.current) $(cat $L/pids.events | tr '\n' ' ') err=$(head -n1 /tmp/fork.err)"
# Every process in the cgroup is the subhost's (its PID namespace), and
# the sleeps the loop left are among them.
pidns=$(readlink /proc/$init/ns/pid)
sleeps=0
set +x
for p in $(cat $L/cgroup.procs); do
	test "$(readlink /proc/$p/ns/pid)" = "$pidns" || fail "process $p ($(cat /proc/$p/comm)) in $L is not in the subhost's PID namespace"
	[ "$(cat /proc/$p/comm)" = sleep ] && sleeps=$((sleeps+1))
done
set -x
echo "INCGROUP sleeps=$sleeps"
ovpkg subhost list --json | grep -q '"state": "running"' || { ovpkg subhost list; fail "the subhost does not run after hitting pids.max"; }
ovpkg subhost stop lim
test -e $L && fail "cgroup $L left after stop"
echo "STOPPED lim: $(sed -n 's/.*"reason": "\(.*\)".*/\1/p' /run/ovpkg/subhosts/lim.json)"

# --- 1b. limits in a container's view ---------------------------------
# A container's cgroup (box, with processes of its own) bind-mounted on
# /sys/fs/cgroup: controllers cannot be handed down from it, and check
# and start say why; nothing is made.
mkdir $CG/box
cat > /tmp/box.sh <<'EOS'
echo $$ > /sys/fs/cgroup/box/cgroup.procs
exec unshare --mount sh -c 'mount --bind /sys/fs/cgroup/box /sys/fs/cgroup; grep cgroup2 /proc/self/mountinfo; ovpkg subhost check /tmp/lim/lim.conf; echo "check=$?"; ovpkg subhost start /tmp/lim/lim.conf; echo "start=$?"'
EOS
sh /tmp/box.sh > /tmp/box.out 2>&1 || true
cat /tmp/box.out
echo "BOX $(grep -c 'process(es) live in /sys/fs/cgroup itself, and cgroup v2 hands controllers' /tmp/box.out) $(grep -E '^(check|start)=' /tmp/box.out | tr '\n' ' ')made=[$(ls -d $CG/box/*/ $CG/ovpkg/*/ 2>/dev/null)]"
rmdir $CG/box
# Another filesystem mounted over the cgroup2 mount hides it: check says
# that none is mounted (not that controllers are missing).
unshare --mount sh -c 'mount -t tmpfs over /sys/fs/cgroup && ovpkg subhost check /tmp/lim/lim.conf' > /tmp/over.out 2>&1 || true
cat /tmp/over.out
echo "OVER $(grep -c 'memory, cpu, pids: no cgroup v2 hierarchy is mounted' /tmp/over.out)"

# --- 2. VLANs on cables -------------------------------------------
# The "host" side is a network namespace of its own (with its own sysfs)
# and two bridges. Cable 0 (vl0/eth0) has no bridge; its VLAN 5 (vl0.5)
# is br0's only port, so only tagged frames reach br0. Cable 1 (vl1/eth1)
# joins br1; its VLAN 7 (vl1.7) has no bridge and gets the host's
# address. Then a crash: the supervisor SIGKILLed, the next stop removes
# what its record lists.
newhost vl START=none "CABLES='=02:00:5e:00:53:01 br0=.5 br1=02:00:5e:00:53:02 =.7'"
unshare --net --mount sh -exc '
fail() { echo "FAIL: $*"; exit 1; }
mount -t sysfs sysfs /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
for b in br0 br1; do brctl addbr $b; ip link set $b up; done
ip addr add 192.0.2.126/25 dev br0
ovpkg subhost check /tmp/vl/vl.conf
ovpkg subhost start /tmp/vl/vl.conf
ip addr add 192.0.2.129/25 dev vl1.7
ovpkg subhost enter vl -- sh -c "for i in eth0 eth0.5 eth1 eth1.7; do ip link set \$i up; done; ip addr add 192.0.2.1/25 dev eth0.5; ip addr add 192.0.2.130/25 dev eth1.7"
echo "HOSTVLAN $(tail -n +3 /proc/net/vlan/config | tr -s " " | sort | tr "\n" ";")"
echo "SUBVLAN $(ovpkg subhost enter vl -- tail -n +3 /proc/net/vlan/config | tr -s " " | sort | tr "\n" ";")"
echo "SUBMAC $(ovpkg subhost enter vl -- cat /sys/class/net/eth0/address /sys/class/net/eth0.5/address /sys/class/net/eth1/address | tr "\n" " ")"
echo "BRIDGE br0=[$(ls /sys/class/net/br0/brif | tr "\n" " ")] br1=[$(ls /sys/class/net/br1/brif | tr "\n" " ")] vl0=$(cat /sys/class/net/vl0/operstate) vl1.7=$(cat /sys/class/net/vl1.7/operstate)"
ping -c1 -W10 192.0.2.1 && echo "PING host->eth0.5 ok"
ovpkg subhost enter vl -- ping -c1 -W10 192.0.2.126 && echo "PING eth0.5->host ok"
ping -c1 -W10 192.0.2.130 && echo "PING host->eth1.7 ok"
ovpkg subhost stop vl
echo "AFTER links=[$(ls /sys/class/net | tr "\n" " ")] vlans=[$(tail -n +3 /proc/net/vlan/config)] netns=[$(ls /run/netns)]"
ovpkg subhost start /tmp/vl/vl.conf
sup=$(sed -n "s/.*\"supervisor_pid\": \([0-9]*\).*/\1/p" /run/ovpkg/subhosts/vl.json)
init=$(sed -n "s/.*\"init_pid\": \([0-9]*\).*/\1/p" /run/ovpkg/subhosts/vl.json)
kill -KILL $sup
while [ -e /proc/$init ]; do sleep 0.05; done
echo "CRASHED links=[$(ls /sys/class/net | tr "\n" " ")] netns=[$(ls /run/netns)]"
ovpkg subhost stop vl
echo "CLEANED links=[$(ls /sys/class/net | tr "\n" " ")] vlans=[$(tail -n +3 /proc/net/vlan/config)] netns=[$(ls /run/netns)] cgroups=[$(ls -d /sys/fs/cgroup/ovpkg/*/ 2>/dev/null)]"
'
echo "GUEST links=[$(ls /sys/class/net | tr '\n' ' ')] overlays=[$(grep -c ' - overlay ' /proc/self/mountinfo || true)] cgroups=[$(ls -d $CG/ovpkg/*/ 2>/dev/null | tr '\n' ' ')]"
trap - EXIT
`

// TestVMLimitsAndVlans boots once (about 20-60 s under TCG) and proves
// in a real kernel what this machine's cannot: MEMORY, CPU and PIDS in
// a pure cgroup v2 hierarchy (values, membership, the limits biting,
// the cgroup gone after stop) and VLANs on cables (with and without
// bridges) pinged across, removed by stop and after a crash.
func TestVMLimitsAndVlans(t *testing.T) {
	t.Parallel()
	r := qemutest.NewRig(t)
	root := r.Root(t, "", map[string]string{"vm": vmStep}, func(d *qemutest.Dir) {
		d.Modules(r.K, "overlay", "loop", "ext4", "veth", "bridge", "8021q")
		d.Write("etc/init.d/hold", "#!/bin/sh\n[ \"$1\" = start ] && sleep 1000 </dev/null >/dev/null 2>&1 &\nexit 0\n", 0o755)
	})
	b := r.BootStep(t, "subhost-vm", "init=/sbin/init cgroup_no_v1=all", "vm", root)
	b.OK(t)
	out := b.Out
	line := func(marker string) string {
		m := regexp.MustCompile(`(?m)^` + marker + ` (.*)$`).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("no %s line", marker)
			return ""
		}
		return m[1]
	}
	num := func(s, re string) int {
		m := regexp.MustCompile(re).FindStringSubmatch(s)
		if m == nil {
			t.Errorf("%q lacks %s", s, re)
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	has := func(marker, want string) {
		t.Helper()
		if s := line(marker); !strings.Contains(s, want) {
			t.Errorf("%s %q lacks %q", marker, s, want)
		}
	}
	for _, c := range []string{"memory", "cpu", "pids"} {
		has("CONTROLLERS", c)
	}
	for _, m := range []string{"veth", "bridge", "8021q", "overlay"} {
		has("MODULES", m+" ")
	}
	has("LIMITS", "memory.max=33554432 cpu.max=50000 100000 pids.max=20")
	has("INITCG", "0::/ovpkg/lim")
	has("INENTER", "0::/") // the subhost's cgroup namespace is rooted at its cgroup
	// Memory: the 48 MiB dd was SIGKILLed by the cgroup's OOM killer.
	mem := line("MEMORY")
	if num(mem, `rc=(\d+)`) != 137 || num(mem, `oom_kill (\d+)`) < 1 {
		t.Errorf("memory limit did not bite: %s", mem)
	}
	has("OOMADJ", "init=-999 service=0 ")
	has("FILL", "rc=137 init=alive")
	cpu := line("CPU")
	if num(cpu, `nr_throttled \d+ -> (\d+)`) <= num(cpu, `nr_throttled (\d+) ->`) {
		t.Errorf("cpu limit did not throttle: %s", cpu)
	}
	pids := line("PIDS")
	if num(pids, `rc=(\d+)`) == 0 || num(pids, `forked=(\d+)`) >= 40 || num(pids, `current=(\d+)`) > 20 || num(pids, `max (\d+)`) < 1 {
		t.Errorf("pids limit did not bite: %s", pids)
	}
	if n := num(line("INCGROUP"), `sleeps=(\d+)`); n < 1 || n > 19 {
		t.Errorf("the fork loop's sleeps in the cgroup: %d", n)
	}
	if s := line("STOPPED"); !regexp.MustCompile(`^lim: stopped by SIGTERM; the OOM killer killed \d+ process\(es\) in it \(MEMORY=32M reached\)$`).MatchString(s) {
		t.Errorf("the record's reason %q does not say why and that the OOM killer struck", s)
	}
	if b := line("BOX"); !regexp.MustCompile(`^2 check=[1-9]\d* start=[1-9]\d* made=\[\]$`).MatchString(b) {
		t.Errorf("limits in a populated cgroup namespace root: %q", b)
	}
	has("OVER", "1")
	has("HOSTVLAN", "vl0.5 | 5 | vl0;vl1.7 | 7 | vl1;")
	has("SUBVLAN", "eth0.5 | 5 | eth0;eth1.7 | 7 | eth1;")
	has("SUBMAC", "02:00:5e:00:53:01 02:00:5e:00:53:01 02:00:5e:00:53:02")
	has("BRIDGE", "br0=[vl0.5 ] br1=[vl1 ] vl0=up vl1.7=up")
	for _, p := range []string{"host->eth0.5", "eth0.5->host", "host->eth1.7"} {
		b.Has(t, `(?m)^PING `+regexp.QuoteMeta(p)+` ok`)
	}
	has("AFTER", "links=[br0 br1 lo ] vlans=[] netns=[]")
	has("CRASHED", "links=[br0 br1 lo vl0 vl0.5 vl1 vl1.7 ] netns=[vl]")
	has("CLEANED", "links=[br0 br1 lo ] vlans=[] netns=[] cgroups=[]")
	has("GUEST", "overlays=[0] cgroups=[]")
	if g := line("GUEST"); strings.Contains(g, "vl0") || strings.Contains(g, "eth") {
		t.Errorf("interfaces left in the guest: %s", g)
	}
	var seen []string
	for _, l := range regexp.MustCompile(`(?m)^(CONTROLLERS|LIMITS|OOMADJ|MEMORY|FILL|CPU|PIDS|INCGROUP|STOPPED|BOX|OVER|HOSTVLAN|SUBVLAN|CLEANED) .*$`).FindAllString(out, -1) {
		seen = append(seen, l)
	}
	t.Logf("one boot, %v; the guest saw:\n%s", b.Took, strings.Join(seen, "\n"))
}
