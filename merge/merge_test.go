package merge

import (
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStatusFixture(t *testing.T) {
	r := Status(read(t, "status/old"), read(t, "status/new"), read(t, "status/card"))
	if !r.Clean() {
		t.Fatalf("conflicts: %v", r.Conflicts)
	}
	if got, want := string(r.Text), string(read(t, "status/want")); got != want {
		t.Errorf("merged status:\n%s\nwant:\n%s", got, want)
	}
	// hello was changed on both sides: the card's kept, and said so.
	var noted bool
	for _, n := range r.Notes {
		if strings.Contains(n, "hello:amd64") && strings.Contains(n, "both") {
			noted = true
		}
	}
	if !noted {
		t.Errorf("no note for the hello stanza both sides changed: %q", r.Notes)
	}
}

func TestStatusUnsortedKeepsCardOrder(t *testing.T) {
	old := []byte("Package: b\nVersion: 1\n\nPackage: a\nVersion: 1\n\n")
	nw := []byte("Package: b\nVersion: 1\n\nPackage: a\nVersion: 2\n\nPackage: c\nVersion: 1\n\n")
	card := []byte("Package: b\nVersion: 1\n\nPackage: a\nVersion: 1\n\nPackage: opk\nVersion: 9\n\n")
	r := Status(old, nw, card)
	want := "Package: b\nVersion: 1\n\nPackage: a\nVersion: 2\n\nPackage: opk\nVersion: 9\n\nPackage: c\nVersion: 1\n\n"
	if string(r.Text) != want {
		t.Errorf("got\n%s\nwant\n%s", r.Text, want)
	}
}

func TestStatusCardRemovedBaseChanged(t *testing.T) {
	old := []byte("Package: a\nVersion: 1\n")
	nw := []byte("Package: a\nVersion: 2\n")
	r := Status(old, nw, nil)
	if len(r.Text) != 0 || len(r.Notes) != 1 {
		t.Errorf("card removal should win with a note: text %q notes %q", r.Text, r.Notes)
	}
}

func TestEntriesPasswd(t *testing.T) {
	r := Entries("etc/passwd", read(t, "passwd/old"), read(t, "passwd/new"), read(t, "passwd/card"))
	if !r.Clean() {
		t.Fatalf("conflicts: %v", r.Conflicts)
	}
	if got, want := string(r.Text), string(read(t, "passwd/want")); got != want {
		t.Errorf("merged passwd:\n%s\nwant:\n%s", got, want)
	}
}

func TestEntriesGidClash(t *testing.T) {
	r := Entries("etc/group", read(t, "group/old"), read(t, "group/new"), read(t, "group/card"))
	if r.Clean() {
		t.Fatalf("gid 101 claimed by games (card) and netdev (base): no conflict reported; text:\n%s", r.Text)
	}
	if c := r.Conflicts[0]; !strings.Contains(c.Reason, "gid 101") {
		t.Errorf("conflict does not name the gid: %v", c)
	}
}

func TestEntriesBothChanged(t *testing.T) {
	old := []byte("root:$6$old:19000:0:99999:7:::\n")
	nw := []byte("root:$6$base:19500:0:99999:7:::\n")
	card := []byte("root:$6$card:19400:0:99999:7:::\n")
	r := Entries("etc/shadow", old, nw, card)
	if r.Clean() {
		t.Fatal("both sides changed root's shadow entry: no conflict")
	}
	if strings.Contains(r.Conflicts[0].String(), "$6$") {
		t.Errorf("conflict message leaks a password hash: %v", r.Conflicts[0])
	}
	// same change on both sides is not a conflict
	if r := Entries("etc/shadow", old, nw, nw); !r.Clean() || string(r.Text) != string(nw) {
		t.Errorf("identical change: %v %q", r.Conflicts, r.Text)
	}
}

func TestLinesFixture(t *testing.T) {
	r := Lines(read(t, "conffile/old"), read(t, "conffile/new"), read(t, "conffile/card"))
	if !r.Clean() {
		t.Fatalf("conflicts: %v", r.Conflicts)
	}
	if got, want := string(r.Text), string(read(t, "conffile/want")); got != want {
		t.Errorf("merged:\n%s\nwant:\n%s", got, want)
	}
}

func TestLinesConflictList(t *testing.T) {
	r := Lines(read(t, "conffile/old"), read(t, "conffile/new-conflict"), read(t, "conffile/card-conflict"))
	if len(r.Conflicts) != 1 {
		t.Fatalf("want exactly one conflict (line 3), got %v", r.Conflicts)
	}
	if r.Conflicts[0].Key != "line 3" {
		t.Errorf("conflict key %q, want line 3", r.Conflicts[0].Key)
	}
	// X11Forwarding changed by the base only: taken even next to a conflict
	if !strings.Contains(string(r.Text), "X11Forwarding yes") {
		t.Errorf("base-only change lost:\n%s", r.Text)
	}
	e := &ConflictError{File: "etc/ssh/sshd_config", Conflicts: r.Conflicts}
	if !strings.Contains(e.Error(), "etc/ssh/sshd_config") || !strings.Contains(e.Error(), "line 3") {
		t.Errorf("error message: %s", e)
	}
}

func TestLinesNoFinalNewline(t *testing.T) {
	r := Lines([]byte("a\nm\nb"), []byte("a\nm\nb\n"), []byte("x\nm\nb"))
	if !r.Clean() || string(r.Text) != "x\nm\nb\n" {
		t.Errorf("got %q %v", r.Text, r.Conflicts)
	}
}

// lcsLen is the textbook DP, the reference for match.
func lcsLen(a, b []string) int {
	dp := make([][]int, len(a)+1)
	for i := range dp {
		dp[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	return dp[0][0]
}

func randLines(r *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = string(rune('a'+r.Intn(4))) + "\n"
	}
	return out
}

func TestMatchIsLongestCommonSubsequence(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for iter := 0; iter < 2000; iter++ {
		a, b := randLines(r, r.Intn(15)), randLines(r, r.Intn(15))
		m := match(a, b)
		n, last := 0, -1
		for i, j := range m {
			if j < 0 {
				continue
			}
			if j <= last || a[i] != b[j] {
				t.Fatalf("bad match %v for %q / %q", m, a, b)
			}
			last = j
			n++
		}
		if want := lcsLen(a, b); n != want {
			t.Fatalf("match found %d common lines, LCS is %d: %q / %q", n, want, a, b)
		}
	}
}

// Edits to disjoint regions on both sides always merge cleanly to the
// result of applying both.
func TestLinesDisjointEditsMerge(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for iter := 0; iter < 500; iter++ {
		n := 20 + r.Intn(30)
		old := make([]string, n)
		for i := range old {
			old[i] = "line " + string(rune('A'+i%26)) + strings.Repeat("x", i) + "\n"
		}
		cut := 5 + r.Intn(n-10)
		nw := append([]string{}, old...)
		card := append([]string{}, old...)
		want := append([]string{}, old...)
		i := r.Intn(cut - 2) // base edits before cut-1
		nw[i] = "BASE\n"
		want[i] = "BASE\n"
		j := cut + r.Intn(n-cut) // card edits after cut
		card[j] = "CARD\n"
		want[j] = "CARD\n"
		res := Lines([]byte(strings.Join(old, "")), []byte(strings.Join(nw, "")), []byte(strings.Join(card, "")))
		if !res.Clean() || string(res.Text) != strings.Join(want, "") {
			t.Fatalf("edits at %d (base) and %d (card) did not merge: %v", i, j, res.Conflicts)
		}
	}
}

func TestKindFor(t *testing.T) {
	for rel, k := range map[string]Kind{"var/lib/dpkg/status": KindStatus, "/etc/passwd": KindEntries,
		"etc/gshadow": KindEntries, "etc/ssh/sshd_config": KindLines, "usr/lib/opkg/status": KindStatus,
		"lib/apk/db/installed": KindStatus, "etc/apk/world": KindLines} {
		if KindFor(rel) != k {
			t.Errorf("KindFor(%s) = %v want %v", rel, KindFor(rel), k)
		}
	}
}

// apk's database: paragraphs keyed by P:, one-letter fields.
func TestStatusApkInstalled(t *testing.T) {
	base := "C:Q1a=\nP:base-files\nV:1\nA:noarch\nF:etc\nR:openwrt_release\n\nC:Q1b=\nP:busybox\nV:1.36\nA:x86_64\n\n"
	newBase := strings.Replace(base, "V:1.36", "V:1.37", 1) // the base upgraded busybox
	card := base + "C:Q1c=\nP:hello\nV:1.0-r1\nA:noarch\nD:libfoo\nF:usr/bin\nR:hello\n\n"
	res := Status([]byte(base), []byte(newBase), []byte(card))
	if !res.Clean() {
		t.Fatal(res.Conflicts)
	}
	got := string(res.Text)
	if !strings.Contains(got, "P:busybox\nV:1.37") || !strings.Contains(got, "P:hello\nV:1.0-r1") || strings.Count(got, "P:base-files") != 1 {
		t.Fatalf("merged:\n%s", got)
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "busybox:x86_64") || !strings.Contains(res.Notes[0], "1.36 -> 1.37") {
		t.Errorf("notes %q", res.Notes)
	}
}
