package txn_test

import (
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// What a package manager run writes besides the packages (issue 8,
// finding 6: about 7 MiB per tiny install on Debian 12): the logs and
// "-old" backups go to the bottom layer (one copy, not rolled back),
// man-db's index is not kept in transaction layers, unchanged copy-ups
// are dropped; the database stays in the transaction's layer. pm below
// does in a transaction what apt, dpkg, man-db's trigger and debconf do.
func TestE2ETrimKeepsBookkeepingOutOfLayers(t *testing.T) {
	nstest.Need(t, "python3")
	r := mustRun(t, `
mkdir -p $R/var/log/apt $R/var/cache/man/de $R/var/cache/debconf $R/var/cache/ldconfig
head -c 300000 /dev/urandom | base64 -w 100 > $R/var/log/dpkg.log
head -c 400000 /dev/urandom > $R/var/cache/man/index.db
head -c 50000 /dev/urandom > $R/var/cache/man/de/index.db
head -c 500000 /dev/urandom > $R/var/cache/debconf/templates.dat
cp $R/var/lib/dpkg/status $R/var/lib/dpkg/status-old
cp -a /bin/sleep $R/usr/bin/hold
ovmount $O >/dev/null
pm() {
	ovpkg __txn-test $O --exec "
		echo 'install $1' >> $R/var/log/dpkg.log
		echo 'Start-Date: $1' >> $R/var/log/apt/history.log
		cp $R/var/lib/dpkg/status $R/var/lib/dpkg/status-old
		printf 'Package: $1\nStatus: install ok installed\nVersion: 1\n\n' >> $R/var/lib/dpkg/status
		head -c 400000 /dev/urandom > $R/var/cache/man/index.db
		head -c 50000 /dev/urandom > $R/var/cache/man/de/index.db
		: >> $R/var/cache/debconf/templates.dat
		mkdir -p $R/var/cache/fontconfig $R/var/cache/ldconfig
		echo $1 > $R/var/cache/fontconfig/$1-le64.cache-8
		echo $1 > $R/var/cache/ldconfig/aux-cache
		mkdir -p $R/usr/share/$1 && echo $1 > $R/usr/share/$1/file
	" $1
}
L=$D/card/ovpkg/layers
txl() { echo $L/$(tail -n2 $D/card/ovpkg/stack | head -n1)/tree; }
bottom() { echo $L/$(head -n1 $D/card/ovpkg/stack)/tree; }
used() { stat -f -c '%b %f %S' $D/card | awk '{print ($1-$2)*$3}'; }
# only what belongs to the transaction is left in its layer
onlyOwn() {
	local got
	got=$(cd $(txl) && find . -type f -o -type c -o -type l | sort | tr '\n' ' ')
	[ "$got" = "./usr/share/$1/file ./var/lib/dpkg/status " ] || { echo "layer of $1 holds: $got"; return 1; }
	[ ! -e $(txl)/var/cache ] || { echo "empty directories left in the layer of $1"; find $(txl)/var/cache; return 1; }
}
same() { cmp $R/$1 $D/base/$1; }

pm one
onlyOwn one
for f in var/log/dpkg.log var/log/apt/history.log var/lib/dpkg/status-old var/cache/fontconfig/one-le64.cache-8; do [ -f $(bottom)/$f ]; done
grep -qx one $R/var/cache/fontconfig/one-le64.cache-8
[ ! -e $R/var/cache/ldconfig/aux-cache ]
grep -qx 'install one' $R/var/log/dpkg.log
[ "$(head -c 100 $R/var/log/dpkg.log)" = "$(head -c 100 $D/base/var/log/dpkg.log)" ]
cmp $R/var/lib/dpkg/status-old $D/base/var/lib/dpkg/status
grep -q 'Package: one' $R/var/lib/dpkg/status
# the index is the one below (the base's); unchanged copies are gone
same var/cache/man/index.db; same var/cache/man/de/index.db; same var/cache/debconf/templates.dat
ovpkg history $O --json > $D/h.json
python3 -c 'import json,sys; h=json.load(open(sys.argv[1])); b=[t["bytes"] for t in h["transactions"]]; assert b[-1] < 40000, b' $D/h.json

cp $R/var/lib/dpkg/status $D/status.one
u0=$(used)
pm two
u1=$(used)
onlyOwn two
echo "GROWTH $((u1 - u0))"
[ $((u1 - u0)) -lt 65536 ]
grep -qx 'install two' $R/var/log/dpkg.log; grep -qx 'Start-Date: two' $R/var/log/apt/history.log
cmp $R/var/lib/dpkg/status-old $D/status.one
n=$(find $L -path '*/var/log/dpkg.log' | wc -l); [ $n = 1 ]

[ -f $(bottom)/var/cache/fontconfig/one-le64.cache-8 ] && [ -f $(bottom)/var/cache/fontconfig/two-le64.cache-8 ]
# rollback: the package and its database entry go; the log keeps its
# lines, the backup stays a backup of an earlier state
ovpkg rollback $O
[ ! -e $R/usr/share/two ]
cmp $R/var/lib/dpkg/status $D/status.one
grep -qx 'install two' $R/var/log/dpkg.log
cmp $R/var/lib/dpkg/status-old $D/status.one
same var/cache/man/index.db
consistent

# killed half-way through the trim (after the commit point, overlays
# down): committed, consistent, the view right
if OVPKG_TEST_CRASH_AT=commit-trim pm three; then echo "crash point not reached"; exit 1; fi
ovmount $O > $D/msg 2>&1; cat $D/msg
consistent
[ -e $R/usr/share/three/file ]
grep -qx 'install three' $R/var/log/dpkg.log
grep -q 'Package: three' $R/var/lib/dpkg/status

# overlays held by another process: the layer cannot be touched (the
# holder's old overlay still has it as its upper); the next commit after
# the holder is gone moves the shared files out of it
mkfifo $D/nap; exec 9<>$D/nap
$R/usr/bin/hold 3600 & H=$!
for i in $(seq 100); do [ "$(readlink /proc/$H/exe)" = $R/usr/bin/hold ] && break; read -t 0.05 -u 9 || true; done
pm four
[ -e $(txl)/var/log/dpkg.log ]
kill $H; wait $H || true
pm five
onlyOwn five
n=$(find $L -path '*/var/log/dpkg.log' | wc -l); [ $n = 1 ]
grep -qx 'install four' $R/var/log/dpkg.log; grep -qx 'install five' $R/var/log/dpkg.log
consistent
ovpkg eject $O >/dev/null
checkClean
`)
	want(t, r, "CLEAN", "GROWTH")
}
