package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// Layer benchmarks (issue 5). Every script works in a tmpfs inside a
// private mount namespace (nstest): a scratch card, a small root $R
// overlaid with --root, and a tree of a few thousand files generated
// deterministically (sizes 0..48 KiB, a few symlinks and hard links).

// layersSetup makes the card and the file generator gen DIR N.
func layersSetup(dir string) string {
	return fmt.Sprintf(`
D=%s
mount -t tmpfs -o size=1500m scratch $D
export OVPKG_CONFIG=$D/ovpkg.conf
export OVPKG_TEST_LAYER_LIMIT=1000
mkoverlay 512 $D/card.img >/dev/null
echo "MOUNTPOINT=$D/card" >> $OVPKG_CONFIG
echo "OVERLAY_DIRS=usr etc var" >> $OVPKG_CONFIG
R=$D/root
mkdir -p $R/usr/bin $R/usr/share $R/etc $R/var
O="--root $R"
gen() { python3 - "$1" "$2" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
r = random.Random(42)
blob = os.urandom(49152)
last = {}
for i in range(n):
    d = os.path.join(root, "d%%02d" %% (i %% 40), "s%%d" %% (i %% 7))
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "f%%05d" %% i)
    if i %% 50 == 49:
        os.symlink("target-%%d" %% i, p)
        continue
    if i %% 97 == 96 and d in last:
        os.link(last[d], p)
        continue
    with open(p, "wb") as f:
        f.write(blob[: r.randrange(0, 49152)])
    os.chmod(p, 0o644 if i %% 3 else 0o755)
    last[d] = p
PY
}
ns() { date +%%s%%N; }
# mount -o loop races with other loop users: retry
lmount() { local k; for k in 1 2 3 4 5 6 7 8; do mount -o loop,offset=1048576 "$1" "$2" && return 0; sleep 0.3; done; return 1; }
`, dir)
}

// flattenScript: one layer of FILES files on the card; times flatten
// (new image, mount, copy, flush, unmount) against cp -a and rsync -a of
// the same tree onto a freshly mounted ext2 image (made untimed), each
// followed by a flush; then dedupe of FILES copies of base files against
// cp -a / rsync -a of that tree.
const layerFiles = 3000

func flattenScript(dir string) string {
	return layersSetup(dir) + fmt.Sprintf(`
N=%d
ovmount $O >/dev/null
ovpkg __txn-test $O $R/usr/share/marker M 2>/dev/null
gen $R/usr/share/tree $N
top=$(tail -n1 $D/card/ovpkg/stack)
SRC=$D/card/ovpkg/layers/$top/tree
sync
# targets for cp and rsync: fresh ext2 images, mounted untimed
for tool in cp rsync; do
	mkoverlay --config $D/$tool.conf 512 $D/$tool.img >/dev/null
	mkdir -p $D/$tool.mnt
	lmount $D/$tool.img $D/$tool.mnt
done
# two rounds, each tool once per round; the better of the two counts
best() { local k=$1 v=$2; eval "cur=\${best_$k:-}"; if [ -z "$cur" ] || [ "$v" -lt "$cur" ]; then eval "best_$k=$v"; fi; }
for round in 1 2; do
	rm -f $D/flat.img; rm -rf $D/cp.mnt/tree $D/rsync.mnt/tree; sync
	t0=$(ns); ovpkg flatten $O -q --to $D/flat.img >/dev/null; t1=$(ns)
	best flatten $((t1 - t0))
	t0=$(ns); cp -a $SRC $D/cp.mnt/tree && sync -f $D/cp.mnt; t1=$(ns)
	best cp $((t1 - t0))
	t0=$(ns); rsync -aH $SRC/ $D/rsync.mnt/tree/ && sync -f $D/rsync.mnt; t1=$(ns)
	best rsync $((t1 - t0))
done
echo "flatten $best_flatten"
echo "cp $best_cp"
echo "rsync $best_rsync"
umount $D/cp.mnt $D/rsync.mnt
# dedupe: the same tree in the base, copied onto the card unchanged
ovpkg eject $O >/dev/null
gen $R/usr/share/dup $N
ovmount $O >/dev/null
cp -a $R/usr/share/dup $D/dupsrc
cp -a $D/dupsrc/. $R/usr/share/dup/
sync
[ -n "$(find $D/card/ovpkg/layers/$top/tree/usr/share/dup -type f | head -1)" ] || { echo "no copies on the card" >&2; exit 1; }
t0=$(ns); ovpkg dedupe $O --json > $D/dd.json; t1=$(ns)
echo "dedupe $((t1 - t0))"
grep -q '"files": [1-9]' $D/dd.json || { cat $D/dd.json >&2; exit 1; }
[ -z "$(find $D/card/ovpkg/layers/$top/tree/usr/share/dup -type f 2>/dev/null | head -1)" ] || { echo "dedupe left files" >&2; exit 1; }
# baselines: cp -a / rsync -aH of the same tree (the copies, as they
# were on the card) onto a fresh ext2 image, flushed
for tool in cp rsync; do rm -rf $D/$tool.mnt/tree; done
for tool in cp rsync; do lmount $D/$tool.img $D/$tool.mnt; rm -rf $D/$tool.mnt/tree; done
sync
t0=$(ns); cp -a $D/dupsrc $D/cp.mnt/dup && sync -f $D/cp.mnt; t1=$(ns)
echo "dedupe_cp $((t1 - t0))"
t0=$(ns); rsync -aH $D/dupsrc/ $D/rsync.mnt/dup/ && sync -f $D/rsync.mnt; t1=$(ns)
echo "dedupe_rsync $((t1 - t0))"
umount $D/cp.mnt $D/rsync.mnt
ovpkg eject $O >/dev/null
umount $D
`, layerFiles)
}

func parseVals(out string) map[string]float64 {
	vals := map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		var k string
		var v float64
		if n, _ := fmt.Sscanf(l, "%s %g", &k, &v); n == 2 {
			vals[k] = v
		}
	}
	return vals
}

// BenchmarkFlattenDedupe: flatten of a card layer of 3000 files vs cp -a
// and rsync -aH of the same tree onto a fresh ext2 image (x-cp, x-rsync:
// ours / theirs, target x-cp <= 1); dedupe of 3000 base copies vs cp -a
// and rsync -aH of that tree (dedupe-x-cp).
func BenchmarkFlattenDedupe(b *testing.B) {
	nstest.RequireRoot(b)
	nstest.Need(b, "rsync", "python3", "cp")
	sum := map[string]float64{}
	for i := 0; i < b.N; i++ {
		dir := nstest.TempDir(b)
		r := nstest.RunTimeout(b, 10*60e9, flattenScript(dir))
		if r.Code != 0 {
			b.Fatalf("benchmark script: %s", r)
		}
		for k, v := range parseVals(r.Stdout) {
			sum[k] += v
		}
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	for _, k := range []string{"flatten", "cp", "rsync", "dedupe", "dedupe_cp", "dedupe_rsync"} {
		b.ReportMetric(sum[k]/n/1e6, "ms-"+strings.ReplaceAll(k, "_", "-"))
	}
	if sum["cp"] > 0 {
		b.ReportMetric(sum["flatten"]/sum["cp"], "x-cp")
		b.ReportMetric(sum["flatten"]/sum["rsync"], "x-rsync")
		b.ReportMetric(sum["dedupe"]/sum["dedupe_cp"], "dedupe-x-cp")
		b.ReportMetric(sum["dedupe"]/sum["dedupe_rsync"], "dedupe-x-rsync")
	}
}

// lookupScript builds a card with L transactions, each in its own layer
// (each adds files in its own directory and in shared ones; the stack is
// the bottom layer, L transaction layers and the empty working layer) over a base /usr of 3000 files,
// then times `find $R/usr` with fresh overlays (uovmount + ovmount first,
// so overlayfs's directory caches are cold; page cache warm), median of 5.
// With limit set, the automatic squash runs (OVPKG_TEST_LAYER_LIMIT=limit).
func lookupScript(dir string, layers []int, limit int) string {
	var b strings.Builder
	b.WriteString(layersSetup(dir))
	fmt.Fprintf(&b, `
gen $R/usr/share/base 3000
`)
	for _, l := range layers {
		fmt.Fprintf(&b, `
rm -f $D/card.img; mkoverlay 512 $D/card.img >/dev/null
echo "MOUNTPOINT=$D/card" >> $OVPKG_CONFIG; echo "OVERLAY_DIRS=usr etc var" >> $OVPKG_CONFIG
export OVPKG_TEST_LAYER_LIMIT=%[2]d
ovmount $O >/dev/null
for i in $(seq 1 %[1]d); do
	ovpkg __txn-test $O --exec "mkdir -p $R/usr/share/l$i; for j in \$(seq 0 20); do echo \$j > $R/usr/share/l$i/f\$j; done; for j in 1 2 3; do echo $i > $R/usr/share/base/d0\$j/s1/l$i; done" l$i 2>/dev/null
done
n=$(wc -w < $D/card/ovpkg/stack)
times=""
for k in 1 2 3 4 5; do
	uovmount $O >/dev/null; ovmount $O >/dev/null
	t0=$(ns); find $R/usr > /dev/null; t1=$(ns)
	times="$times $((t1 - t0))"
done
med=$(echo $times | tr ' ' '\n' | sort -n | sed -n 3p)
echo "find_%[1]d $med"
echo "layers_%[1]d $n"
ovpkg eject $O >/dev/null
`, l, limit)
	}
	b.WriteString("umount $D\n")
	return b.String()
}

// BenchmarkOverlayLookup: `find` over an overlaid /usr of ~3000 base files
// with 1, 4, 16 and 64 transactions (layers-Ntxn: the stack's length;
// x-1txn-N: time / time with one transaction),
// and with 64 transactions under the automatic squash (default limit 16:
// the stack stays at <= 16 layers).
func BenchmarkOverlayLookup(b *testing.B) {
	nstest.RequireRoot(b)
	nstest.Need(b, "python3", "find")
	counts := []int{1, 4, 16, 64}
	sum := map[string]float64{}
	for i := 0; i < b.N; i++ {
		dir := nstest.TempDir(b)
		r := nstest.RunTimeout(b, 10*60e9, lookupScript(dir, counts, 1000))
		if r.Code != 0 {
			b.Fatalf("benchmark script: %s", r)
		}
		for k, v := range parseVals(r.Stdout) {
			sum[k] += v
		}
		dir2 := nstest.TempDir(b)
		r = nstest.RunTimeout(b, 10*60e9, strings.ReplaceAll(lookupScript(dir2, []int{64}, 16), "find_64", "find_auto"))
		if r.Code != 0 {
			b.Fatalf("benchmark script: %s", r)
		}
		v := parseVals(r.Stdout)
		sum["find_auto"] += v["find_auto"]
		sum["layers_auto"] = v["layers_64"]
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	for _, c := range counts {
		k := fmt.Sprintf("find_%d", c)
		b.ReportMetric(sum[k]/n/1e6, fmt.Sprintf("ms-find-%dtxn", c))
		b.ReportMetric(sum[fmt.Sprintf("layers_%d", c)]/n, fmt.Sprintf("layers-%dtxn", c))
		if sum["find_1"] > 0 {
			b.ReportMetric(sum[k]/sum["find_1"], fmt.Sprintf("x-1txn-%d", c))
		}
	}
	b.ReportMetric(sum["find_auto"]/n/1e6, "ms-find-64txn-autosquash")
	b.ReportMetric(sum["layers_auto"], "layers-after-64txn-autosquash")
}
