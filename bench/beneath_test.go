package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/internal/nstest"
)

// BenchmarkOvmountBeneath: what resolving the card's layout beneath its
// root (issue 9 item 1: openat2 with RESOLVE_BENEATH|NO_SYMLINKS|NO_XDEV,
// the overlay directories then compared by inode, layer directories
// listed beneath) adds to one ovmount + eject cycle, against that cycle
// (the baseline, timed in the same run as in BenchmarkMountEjectCycle).
// Timed in-process on a layout of two layers and four directories (usr
// etc var opt) on the test's tmpfs: before, what ovmount did by name
// (lstat, read FORMAT and stack, stat each tree, MkdirAll and stat each
// upper and work, stat the lowers, list the layers, look for the
// journal); now, the same steps through card (Open, Layers, EnsureDirs,
// Specs, LayerDirs, the journal read beneath). x-cycle = added / cycle.
func BenchmarkOvmountBeneath(b *testing.B) {
	nstest.RequireRoot(b)
	root := b.TempDir()
	dirs := []string{"usr", "etc", "var", "opt"}
	l, err := card.Init(root, dirs)
	if err != nil {
		b.Fatal(err)
	}
	if err := l.AddLayer("0002", dirs); err != nil {
		b.Fatal(err)
	}
	if err := l.WriteStack([]string{"0001", "0002"}); err != nil {
		b.Fatal(err)
	}
	ids := []string{"0001", "0002"}
	journal := filepath.Join(l.Top(), "txn")
	before := func() {
		if _, err := os.Lstat(l.Top()); err != nil {
			b.Fatal(err)
		}
		if _, err := os.ReadFile(l.FormatFile()); err != nil {
			b.Fatal(err)
		}
		for k := 0; k < 3; k++ { // Open, Layers, Specs each read the stack
			sb, err := os.ReadFile(l.StackFile())
			if err != nil {
				b.Fatal(err)
			}
			for _, id := range card.ParseStack(string(sb)) {
				if _, err := os.Stat(l.Tree(id)); err != nil {
					b.Fatal(err)
				}
			}
		}
		for _, d := range dirs {
			for _, p := range []string{l.Upper("0002", d), l.Work("0002", d)} {
				if err := os.MkdirAll(p, 0o755); err != nil {
					b.Fatal(err)
				}
				os.Stat(p)
			}
			os.Stat(l.Upper("0001", d))
		}
		if _, err := os.ReadDir(l.LayersDir()); err != nil {
			b.Fatal(err)
		}
		if _, err := os.ReadFile(journal); !errors.Is(err, fs.ErrNotExist) {
			b.Fatal(err)
		}
	}
	now := func() {
		nl, err := card.Open(root)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := nl.Layers(); err != nil {
			b.Fatal(err)
		}
		if err := nl.EnsureDirs("0002", dirs); err != nil {
			b.Fatal(err)
		}
		if _, err := nl.Specs(dirs); err != nil {
			b.Fatal(err)
		}
		if _, err := nl.LayerDirs(); err != nil {
			b.Fatal(err)
		}
		if _, err := nl.ReadFile(journal, 1<<20); !errors.Is(err, fs.ErrNotExist) {
			b.Fatal(err)
		}
		_ = ids
	}
	const rounds = 200
	var plain, checks time.Duration
	var cycle float64
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		for k := 0; k < rounds; k++ {
			before()
		}
		plain += time.Since(t0)
		t0 = time.Now()
		for k := 0; k < rounds; k++ {
			now()
		}
		checks += time.Since(t0)

		d := nstest.TempDir(b)
		r := nstest.Run(b, mountScript(d, false))
		if r.Code != 0 {
			b.Fatalf("benchmark script: %s", r)
		}
		for _, ln := range strings.Split(r.Stdout, "\n") {
			var v float64
			if n, _ := fmt.Sscanf(ln, "ours %g", &v); n == 1 {
				cycle += v
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(plain)/n/rounds/1e3, "us-before")
	b.ReportMetric(float64(checks)/n/rounds/1e3, "us-beneath")
	added := float64(checks-plain) / n / rounds
	b.ReportMetric(added/1e3, "us-added/cycle")
	b.ReportMetric(cycle/n/1e6, "ms-cycle")
	if cycle > 0 {
		b.ReportMetric(added/(cycle/n), "x-cycle")
	}
}
