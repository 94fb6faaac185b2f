package txn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/mountset"
)

func TestJournalRoundTrip(t *testing.T) {
	j := Journal{Op: "begin", ID: "0007", Command: "install", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Args: []string{"hello", "supertux"}}
	got, err := parseJournal(j.line())
	if err != nil {
		t.Fatal(err)
	}
	if got.Op != j.Op || got.ID != j.ID || got.Command != j.Command || !got.Time.Equal(j.Time) || strings.Join(got.Args, ",") != "hello,supertux" {
		t.Errorf("round trip: %+v != %+v", got, j)
	}
	for _, bad := range []string{"", "begin 1 x", "commit 1 x 2026-01-01T00:00:00Z", "begin 1 x yesterday"} {
		if _, err := parseJournal(bad); err == nil {
			t.Errorf("parseJournal(%q) accepted", bad)
		}
	}
}

func testCard(t *testing.T) *Card {
	dir := t.TempDir()
	l, err := card.Init(dir, []string{"usr"})
	if err != nil {
		t.Fatal(err)
	}
	return &Card{L: l, Rec: &mountset.Record{CardMount: dir, Dirs: []string{"usr"}}, Out: os.Stderr}
}

func TestTransactionsFollowSquashAndRollback(t *testing.T) {
	c := testCard(t)
	now := time.Now().UTC()
	for _, e := range []Entry{
		{Event: "txn", ID: "0002", Time: now, Command: "install", Packages: []string{"a"}},
		{Event: "txn", ID: "0003", Time: now, Command: "install", Packages: []string{"b"}},
		{Event: "txn", ID: "0004", Time: now, Command: "remove", Packages: []string{"a"}},
		{Event: "rollback", Layers: []string{"0004"}},
		{Event: "squash", Layers: []string{"0001", "0002", "0003"}, Into: "0005"},
		{Event: "txn", ID: "0006", Time: now, Command: "install", Packages: []string{"c"}},
		{Event: "squash", Layers: []string{"0005", "0006"}, Into: "0007"},
	} {
		if err := c.appendHistory(e); err != nil {
			t.Fatal(err)
		}
	}
	// a torn last line (crash while appending) is skipped
	f, _ := os.OpenFile(c.historyPath(), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"event":"txn","id":"00`)
	f.Close()
	ts, err := c.Transactions()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"0002": "squashed 0007", "0003": "squashed 0007", "0004": "rolled-back ", "0006": "squashed 0007"}
	if len(ts) != 4 {
		t.Fatalf("got %d transactions: %+v", len(ts), ts)
	}
	for _, x := range ts {
		if got := x.State + " " + x.Layer; got != want[x.ID] {
			t.Errorf("%s: %q, want %q", x.ID, got, want[x.ID])
		}
	}
}

func TestRecoverLayoutRemovesGarbage(t *testing.T) {
	c := testCard(t)
	if err := c.L.AddLayer("0002", []string{"usr"}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(c.L.Upper("0002", "usr"), "half"), []byte("x"), 0o644)
	c.writeJournal(Journal{Op: "begin", ID: "0002", Command: "install", Time: time.Now()})
	var msgs []string
	if err := RecoverLayout(c.Rec.CardMount, func(s string) { msgs = append(msgs, s) }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.L.LayerDir("0002")); !os.IsNotExist(err) {
		t.Errorf("garbage layer left: %v", err)
	}
	if _, err := os.Stat(c.journalPath()); !os.IsNotExist(err) {
		t.Errorf("journal left")
	}
	if len(msgs) != 1 || !strings.Contains(msgs[0], "transaction 0002 (install) was interrupted; the card is as before it") {
		t.Errorf("messages %q", msgs)
	}
	if id, _ := c.nextID(); id != "0002" {
		t.Errorf("next id %s", id)
	}
}

func TestConffiles(t *testing.T) {
	st := "Package: ssh\nConffiles:\n /etc/ssh/sshd_config abc\n /etc/default/ssh def obsolete\nDescription: x\n\nPackage: b\nVersion: 1\n"
	got := strings.Join(conffiles([]byte(st)), ",")
	if got != "etc/ssh/sshd_config,etc/default/ssh" {
		t.Errorf("conffiles: %s", got)
	}
}

// Any command a verb passes to Begin is written so that the journal's own
// parser takes it back (try commit's names .deb paths).
func TestJournalCommandReadBack(t *testing.T) {
	for _, c := range []string{"install sl", "try install /tmp/a b/x_1.0_all.deb; apt-get -y install ünï", "", "   ",
		strings.Repeat("install verylongpackagename ", 10)} {
		cmd := journalCommand(c)
		j := Journal{Op: "begin", ID: "0002", Command: cmd, Time: time.Now().UTC()}
		if _, err := ParseJournal(j.line()); err != nil || !validCommand(cmd) {
			t.Errorf("%q -> %q: %v", c, cmd, err)
		}
	}
	if got := journalCommand("try install /tmp/x.deb"); got != "try-install-_tmp_x.deb" {
		t.Errorf("got %q", got)
	}
}
