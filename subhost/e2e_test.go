package subhost_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// prelude runs after nstest's: the test's "host" is a network namespace
// of its own (never the machine's), /run/netns a private tmpfs, the
// subhosts' files on a tmpfs (so that UPPER is not on the host root's
// filesystem, which LOWER=/ is).
const prelude = `
mkdir -p /run/netns && mount -t tmpfs -o size=1m netns /run/netns
mkdir -p "$T" && mount -t tmpfs -o size=64m subhosts "$T"
mkdir -p "$T/log"
# Nothing of a subhost may be left: interfaces, namespace names,
# cgroups, processes, mounts.
leftovers() {
  local n cmds links
  cmds=$(for p in /proc/[0-9]*; do tr '\0' ' ' 2>/dev/null < $p/cmdline || true; echo; done)
  links=$(ip -o link show)
  for n in "$@"; do
    if echo "$links" | grep -qE "^[0-9]+: $n[0-9]"; then echo "LEFT: interface of $n"; fi
    if [ -e /run/netns/$n ]; then echo "LEFT: netns $n"; fi
    if [ -n "$CG" ] && [ -e "$CG/ovpkg/$n" ]; then echo "LEFT: cgroup $n"; fi
    if echo "$cmds" | grep -qx "ovpkg-subhost-init $n "; then echo "LEFT: process of $n"; fi
    { grep -l "^[0-9]* [0-9]* [0-9:]* [^ ]* [^ ]* [^-]*- overlay $n " /proc/[0-9]*/mountinfo 2>/dev/null || true; } | sed "s/^/LEFT: mount of $n in /"
  done
  return 0
}
# Supervisors run in their own sessions: a failing test must still stop
# every subhost it started (and so free the card, the cables, the cgroups).
stopall() {
  local f
  for f in /run/ovpkg/subhosts/*.json; do
    [ -e "$f" ] && ovpkg subhost stop "$(basename "$f" .json)" >/dev/null 2>&1
  done
  return 0
}
trap stopall EXIT
CG=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
# newhost NAME [CONFIG LINES...]: a subhost directory and config.
newhost() {
  local n=$1; shift
  mkdir -p "$T/$n/root" "$T/$n/work" "$T/$n/live"
  { echo "BASE=."; echo "LOG=$T/log/$n.log"; echo "START=none"; for l in "$@"; do echo "$l"; done; } > "$T/$n/$n.conf"
}
`

// hostScript runs script as root in a private mount namespace and a new
// network namespace (the test's host side).
func hostScript(t *testing.T, script string) nstest.Result {
	t.Helper()
	nstest.Need(t, "ip", "unshare")
	dir := nstest.TempDir(t)
	full := prelude + script
	return nstest.Run(t, fmt.Sprintf("export T=%s\ncat > $T.sh <<'OVPKG_EOF'\n%s\nOVPKG_EOF\nexec unshare --net bash -euo pipefail $T.sh", filepath.Join(dir, "t"), full))
}

// names returns n unique subhost names (random: parallel runs of other
// tests must never meet them).
func names(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		var b [4]byte
		rand.Read(b[:])
		out = append(out, "t"+hex.EncodeToString(b[:])[:7])
	}
	return out
}

func mac(i int) string { return fmt.Sprintf("02:00:5e:00:53:%02x", i) }

func TestCablesBridgePing(t *testing.T) {
	nstest.Need(t, "ping")
	ns := names(2)
	a, b := ns[0], ns[1]
	r := hostScript(t, fmt.Sprintf(`
A=%s B=%s
ip link add br0 type bridge && ip addr add 192.0.2.254/24 dev br0 && ip link set br0 up
newhost $A "CABLES=br0=%s"
newhost $B "CABLES='br0=%s ='"
ovpkg subhost check $T/$A/$A.conf
ovpkg subhost start $T/$A/$A.conf
overlay-boot $T/$B/$B.conf
ovpkg subhost enter $A -- sh -c 'ip addr add 192.0.2.1/24 dev eth0 && ip link set eth0 up'
overlay-go $B -- sh -c 'ip addr add 192.0.2.2/24 dev eth0 && ip link set eth0 up'
echo "host ends:"; ip -o link show master br0 | awk '{print $2}'
echo "B eth1 master: $(ip -o link show ${B}1 | grep -c master || true)"
echo "A mac: $(ovpkg subhost enter $A -- cat /sys/class/net/eth0/address)"
echo "A hostname: $(ovpkg subhost enter $A -- hostname)"
ovpkg subhost enter $A -- ping -c1 -W5 192.0.2.2 >/dev/null && echo "A->B ok"
ping -c1 -W5 192.0.2.1 >/dev/null && echo "host->A ok"
ovpkg subhost list
ovpkg subhost list --json > $T/list.json
ovpkg subhost stop $A
overlay-stop $T/$B/$B.conf
leftovers $A $B
echo "links: $(ip -o link show | awk '{print $2}' | tr '\n' ' ')"
`, a, b, mac(1), mac(2)))
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	out := r.Stdout
	for _, want := range []string{a + "0@", b + "0@", "A mac: " + mac(1), "A hostname: " + a, "A->B ok", "host->A ok",
		"subhost " + a + " stopped: stopped by SIGTERM", "subhost " + b + " stopped", "B eth1 master: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, r)
		}
	}
	if strings.Contains(out, "LEFT:") {
		t.Errorf("left behind:\n%s", out)
	}
	if !strings.Contains(out, "links: lo: br0: \n") && !strings.Contains(out, "links: lo: br0: ") {
		t.Errorf("interfaces left: %s", out)
	}
}

func TestServicesStartStopOrder(t *testing.T) {
	nstest.Need(t, "service")
	n := names(1)[0]
	r := hostScript(t, fmt.Sprintf(`
N=%s
newhost $N "SHARE=$T/share:/srv/share" "STOP_TIMEOUT=1"
sed -i 's/^START=none$/START="sa sb sc"/' $T/$N/$N.conf
mkdir -p $T/share $T/$N/root/etc/init.d
for s in sa sb sc; do
cat > $T/$N/root/etc/init.d/$s <<EOS
#!/bin/sh
echo "\$1 $s" >> /srv/share/log
case "\$1" in
start) case $s in
  sb) setsid sh -c 'echo \$\$ > /run/sb.pid; exec sleep 1000' </dev/null >/dev/null 2>&1 & ;;
  sc) setsid sh -c 'trap "" TERM; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 & ;;
  esac ;;
stop) [ $s = sb ] && kill \$(cat /run/sb.pid) ;;
esac
exit 0
EOS
chmod +x $T/$N/root/etc/init.d/$s
done
ovpkg subhost start $T/$N/$N.conf
echo "running: $(ovpkg subhost enter $N -- sh -c 'ps -e -o comm= | sort | tr "\n" " "')"
ovpkg subhost stop $N
echo "log: $(tr '\n' ',' < $T/share/log)"
ovpkg subhost list --json
leftovers $N
`, n))
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.Stdout, "log: start sa,start sb,start sc,stop sc,stop sb,stop sa,") {
		t.Errorf("services not started and stopped in order:\n%s", r)
	}
	if !strings.Contains(r.Stdout, "sleep") {
		t.Errorf("sb's daemon not running:\n%s", r)
	}
	if !strings.Contains(r.Stdout, "process(es) did not end within 1s of SIGTERM and were killed") {
		t.Errorf("the stubborn process's SIGKILL is not recorded:\n%s", r)
	}
	if strings.Contains(r.Stdout, "LEFT:") {
		t.Errorf("left behind:\n%s", r.Stdout)
	}
}

func TestSupervisorKilled(t *testing.T) {
	n := names(1)[0]
	r := hostScript(t, fmt.Sprintf(`
N=%s
ip link add br0 type bridge
newhost $N "CABLES=br0= br0="
ovpkg subhost start $T/$N/$N.conf
sup=$(sed -n 's/.*"supervisor_pid": \([0-9]*\).*/\1/p' /run/ovpkg/subhosts/$N.json)
init=$(sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p' /run/ovpkg/subhosts/$N.json)
kill -KILL $sup
while [ -e /proc/$init ]; do sleep 0.05; done
echo "after kill: $(ip -o link show | grep -c " $N[0-9]@" || true) host ends"
ovpkg subhost list
! ovpkg subhost enter $N -- true 2>$T/enter.err
echo "enter: $(cat $T/enter.err)"
# a second start cleans up and works; then kill again and stop cleans
ovpkg subhost start $T/$N/$N.conf
echo "restarted: $(ovpkg subhost enter $N -- cat /sys/class/net/eth1/operstate)"
sup=$(sed -n 's/.*"supervisor_pid": \([0-9]*\).*/\1/p' /run/ovpkg/subhosts/$N.json)
kill -KILL $sup
ovpkg subhost stop $N
leftovers $N
ovpkg subhost list --json
`, n))
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	for _, want := range []string{"after kill: 2 host ends", "crashed", "is not running", "restarted: ", "cleaned up by ovpkg subhost stop"} {
		if !strings.Contains(r.Stdout+r.Stderr, want) {
			t.Errorf("missing %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.Stdout, "LEFT:") {
		t.Errorf("left behind:\n%s", r.Stdout)
	}
}

func TestTwentySubhosts(t *testing.T) {
	ns := names(20)
	r := hostScript(t, fmt.Sprintf(`
ip link add br0 type bridge && ip link set br0 up
all="%s"
i=0
for n in $all; do i=$((i+1)); newhost $n "CABLES=br0=02:00:5e:00:54:$(printf %%02x $i)"; done
for n in $all; do ovpkg subhost start $T/$n/$n.conf >/dev/null; done
echo "running: $(ovpkg subhost list | grep -c ' running ')"
echo "ends on br0: $(ip -o link show master br0 | wc -l)"
for n in $all; do ovpkg subhost stop $n >/dev/null; done
echo "stopped: $(ovpkg subhost list | grep -c ' stopped ')"
leftovers $all
`, strings.Join(ns, " ")))
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	for _, want := range []string{"running: 20", "ends on br0: 20", "stopped: 20"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("missing %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.Stdout, "LEFT:") {
		t.Errorf("left behind:\n%s", r.Stdout)
	}
}

func TestCheckReportsEverything(t *testing.T) {
	n := names(1)[0]
	r := hostScript(t, fmt.Sprintf(`
N=%s
mkdir -p $T/other && mount -t tmpfs o $T/other && mkdir $T/other/work
ip link add br0 type bridge
ip link add v0 type veth peer name v1
newhost $N "WORK=$T/other/work" "CABLES=br0=02:00:5e:00:53:01 nobr=02:00:5e:00:53:01 v0=" "FOO=1" "MEMORY=12x"
rmdir $T/$N/live
set +e
ovpkg subhost check $T/$N/$N.conf; echo "exit $?"
sed -i /MEMORY/d $T/$N/$N.conf
ovpkg subhost check $T/$N/$N.conf; echo "exit $?"
ovpkg subhost start $T/$N/$N.conf; echo "start exit $?"
echo "netns: $(ls /run/netns | wc -l) cgroup: $([ -e "$CG/ovpkg/$N" ] && echo yes || echo no)"
printf 'BASE=.\nNAME=abcdefghijklm\n' > $T/long.conf; ovpkg subhost check $T/long.conf; echo "exit $?"
printf 'BASE=.\nthis is not\n' > $T/bad.conf; ovpkg subhost start $T/bad.conf; echo "exit $?"
printf 'START=none\n' > $T/nobase.conf; overlay-boot $T/nobase.conf; echo "exit $?"
`, n))
	out := r.Stdout + r.Stderr
	for _, want := range []string{
		n + ".conf:7: MEMORY=12x: want a size",
		"LIVE " + "$T",
		"is not on the filesystem of UPPER",
		"bridge nobr does not exist",
		"MAC 02:00:5e:00:53:01 is also given to cable 0",
		"v0 is a \"veth\" interface, not a bridge",
		n + ".conf:6: warning: unknown key FOO",
		"5 problem(s)",
		"exit 1",
		"start exit 1",
		"netns: 0 cgroup: no",
		"long.conf:2: NAME=abcdefghijklm: 13 characters, at most 12",
		"bad.conf:2: \"this is not\" is not a KEY=VALUE assignment",
		"nobase.conf: BASE is not set",
	} {
		want = strings.ReplaceAll(want, "$T", "")
		if !strings.Contains(out, want) {
			t.Errorf("missing %q:\n%s", want, r)
		}
	}
}

func TestHelpersAndOverlayBootConfig(t *testing.T) {
	n := names(1)[0]
	r := hostScript(t, fmt.Sprintf(`
N=%s
mkdir -p $T/$N/work $T/$N/live $T/$N/elsewhere
cat > $T/$N/$N.conf <<EOC
# an overlay-boot config, unchanged
BASE=.
UPPER=!echo "\$ACTION" >> $T/actions; echo $T/$N/elsewhere
LOG=$T/$N.log
START=none
RAM_SIZE=none
SHARE=$T/shared
EOC
mkdir -p $T/shared && echo hello > $T/shared/f
ovpkg subhost start $T/$N/$N.conf
ovpkg subhost enter $N -- sh -c 'echo made > /made; cat '$T'/shared/f; grep -c " /run " /proc/mounts || true; readlink /proc/1/root; ls /old_root 2>&1 | head -1'
ovpkg subhost stop $N
echo "upper: $(cat $T/$N/elsewhere/made)"
echo "actions: $(tr '\n' ' ' < $T/actions)"
`, n))
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	for _, want := range []string{"hello\n0\n/\n", "upper: made", "actions: overlay-boot overlay-stop"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("missing %q:\n%s", want, r)
		}
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// The systemd unit's contract (packaging/systemd/ovpkg-subhost@.service,
// Type=notify, NotifyAccess=main): `start --foreground` is the main
// process, it sends READY=1 (with its own MAINPID) on $NOTIFY_SOCKET once
// the subhost is up, stays until SIGTERM, then stops the subhost and exits
// 0 with nothing left. A listener stands in for systemd.
func TestForegroundNotify(t *testing.T) {
	nstest.Need(t, "python3")
	n := names(1)[0]
	r := hostScript(t, fmt.Sprintf(`
N=%s
newhost $N
cat > $T/listen.py <<'EOP'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
open(sys.argv[2], "w").close()
while True:
    m = s.recv(4096).decode()
    print(m.replace("\n", " "), flush=True)
    if "READY=1" in m:
        break
EOP
python3 $T/listen.py $T/notify $T/listening > $T/got &
lpid=$!
while [ ! -e $T/listening ]; do sleep 0.05; done
NOTIFY_SOCKET=$T/notify ovpkg subhost start --foreground $T/$N/$N.conf > $T/fg.out 2>&1 &
fg=$!
wait $lpid
echo "notified: $(cat $T/got)"
echo "fg pid: $fg"
ovpkg subhost list | grep -q " running " && echo "listed running"
kill -TERM $fg
wait $fg; echo "foreground exit $?"
ovpkg subhost list --json | grep -q '"state": "stopped"' && echo "stopped"
leftovers $N
`, n))
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	var fg string
	for _, l := range strings.Split(r.Stdout, "\n") {
		if v, ok := strings.CutPrefix(l, "fg pid: "); ok {
			fg = v
		}
	}
	for _, want := range []string{"READY=1", "MAINPID=" + fg + "\n", "listed running", "foreground exit 0", "stopped"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("missing %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.Stdout, "LEFT:") {
		t.Errorf("left behind:\n%s", r.Stdout)
	}
}
