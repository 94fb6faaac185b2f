package txn

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/card"
)

// FuzzParseJournal: a journal that parses has a valid layer id, command
// and arguments, and writes back to the same journal.
func FuzzParseJournal(f *testing.F) {
	for _, s := range []string{
		"begin 0003 install 2026-01-02T03:04:05Z hello world\n",
		"squash 0009 commit 2026-01-02T03:04:05Z 0001 0002\n",
		"rollback 0004 rollback 2026-01-02T03:04:05Z 0004 0005\n",
		"begin ../x install 2026-01-02T03:04:05Z\n",
		"squash 0009 commit 2026-01-02T03:04:05Z ../../etc\n",
		"begin 0003 install yesterday\n",
		"begin 0003 \x1b[2J 2026-01-02T03:04:05Z\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := parseJournal(s)
		if err != nil {
			return
		}
		if card.CheckID(j.ID) != nil || hasControl(j.Command) || strings.ContainsAny(j.Command, " \t\n") {
			t.Fatalf("bad id or command accepted: %+v", j)
		}
		for _, a := range j.Args {
			if j.Op != "begin" && card.CheckID(a) != nil || hasControl(a) {
				t.Fatalf("bad argument %q accepted", a)
			}
		}
		j2, err := parseJournal(j.line())
		if err != nil || j2.ID != j.ID || j2.Op != j.Op || !slices.Equal(j2.Args, j.Args) || !j2.Time.Equal(j.Time) {
			t.Fatalf("round trip: %+v -> %q -> %+v %v", j, j.line(), j2, err)
		}
	})
}

// FuzzParseSums: every path of a sums file that parses stays inside one
// of the overlaid directories, whatever the card holds.
func FuzzParseSums(f *testing.F) {
	sum := strings.Repeat("ab", 32)
	for _, s := range []string{
		sum + " etc/passwd\n- var/lib/dpkg/status\n",
		sum + " ../etc/shadow\n",
		sum + " /etc/shadow\n",
		sum + " etc/../../root/x\n",
		sum + " etc\n",
		"x etc/passwd\n",
		sum + " etc/pass\x00wd\n",
		"\n",
	} {
		f.Add([]byte(s))
	}
	dirs := []string{"usr", "etc", "var/lib"}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSums(b, dirs)
		if err != nil {
			return
		}
		for p, s := range m {
			if !validSum(s) {
				t.Fatalf("sum %q accepted", s)
			}
			j := filepath.Join("/root", p)
			d := overlaidDir(p, dirs)
			if d == "" || !strings.HasPrefix(j, "/root/"+d+"/") || hasControl(p) {
				t.Fatalf("path %q accepted: %s", p, j)
			}
		}
	})
}

// FuzzParseHistory: entries that parse carry only valid layer ids and
// printable texts.
func FuzzParseHistory(f *testing.F) {
	for _, s := range []string{
		`{"event":"txn","id":"0002","time":"2026-01-02T03:04:05Z","command":"install","packages":["hello"],"bytes":10}` + "\n",
		`{"event":"squash","time":"2026-01-02T03:04:05Z","layers":["0001","0002"],"into":"0003","bytes":0}` + "\n" + `{"event":"tx`,
		`{"event":"rollback","time":"2026-01-02T03:04:05Z","layers":["../../x"],"bytes":0}` + "\n",
		`{"event":"txn","id":"0002","time":"2026-01-02T03:04:05Z","command":"\u001b[2J","bytes":0}` + "\n",
		"garbage\n" + `{"event":"txn","id":"0002","time":"2026-01-02T03:04:05Z","bytes":1}` + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := ParseHistory(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, e := range es {
			if err := CheckEntry(e); err != nil {
				t.Fatalf("entry %+v accepted: %v", e, err)
			}
			for _, id := range append([]string{e.ID, e.Into}, e.Layers...) {
				if strings.Contains(id, "/") || id == ".." {
					t.Fatalf("id %q accepted", id)
				}
			}
		}
	})
}

func TestParseJournalRefuses(t *testing.T) {
	now := time.Now().UTC().Format(time.RFC3339)
	for _, s := range []string{
		"begin ../x install " + now,
		"squash 0009 commit " + now + " ../../etc",
		"begin 0003 install " + now + " a\x1bb",
	} {
		if _, err := parseJournal(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestParseSumsRefuses(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for _, s := range []string{sum + " ../etc/shadow\n", sum + " /etc/shadow\n", sum + " etc/../../x\n", sum + " root/x\n", "zz etc/passwd\n"} {
		_, err := ParseSums([]byte(s), []string{"etc"})
		if err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: %v", s, err)
		}
	}
	m, err := ParseSums([]byte(sum+" etc/passwd\n- etc/new\n"), []string{"etc"})
	if err != nil || len(m) != 2 {
		t.Errorf("valid sums: %v %v", m, err)
	}
}

func TestParseHistoryTornLastLine(t *testing.T) {
	ok := `{"event":"txn","id":"0002","time":"2026-01-02T03:04:05Z","bytes":1}` + "\n"
	es, err := ParseHistory(strings.NewReader(ok + `{"event":"tx`))
	if err != nil || len(es) != 1 {
		t.Errorf("torn last line: %v %v", es, err)
	}
	if _, err := ParseHistory(strings.NewReader(`{"event":"tx` + "\n" + ok)); err == nil {
		t.Error("a bad line in the middle accepted")
	}
	if _, err := ParseHistory(strings.NewReader(`{"event":"rollback","time":"2026-01-02T03:04:05Z","layers":["../x"],"bytes":0}` + "\n")); err == nil {
		t.Error("a bad layer id accepted")
	}
}
