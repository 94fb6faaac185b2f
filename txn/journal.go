package txn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ovpkg/ovpkg/card"
)

// Journal is the transaction in progress, as <card>/ovpkg/txn records it.
type Journal struct {
	Op      string    // "begin", "squash" or "rollback"
	ID      string    // the new layer
	Command string    // install, remove, upgrade, commit, ...
	Time    time.Time //
	Args    []string  // packages (begin) or the layers being replaced (squash)
}

func (j Journal) line() string {
	f := append([]string{j.Op, j.ID, j.Command, j.Time.UTC().Format(time.RFC3339)}, j.Args...)
	return strings.Join(f, " ") + "\n"
}

// MaxJournal bounds the journal file.
const MaxJournal = 1 << 20

// ParseJournal reads the journal's text (one line) and validates every
// field before anything uses it: the op, the layer id (card.CheckID), the
// command (1-64 of [a-z0-9._-]), an RFC 3339 time, and the arguments
// (layer ids for squash and rollback; for begin, package names or paths of at
// most 4096 bytes without control characters), at most 10000.
func ParseJournal(s string) (*Journal, error) { return parseJournal(s) }

func parseJournal(s string) (*Journal, error) {
	if len(s) > MaxJournal {
		return nil, fmt.Errorf("transaction journal larger than %d bytes", MaxJournal)
	}
	f := strings.Fields(s)
	if len(f) < 4 || (f[0] != "begin" && f[0] != "squash" && f[0] != "rollback") {
		return nil, fmt.Errorf("unreadable transaction journal %s", quoteShort(strings.TrimSpace(s)))
	}
	if card.CheckID(f[1]) != nil {
		return nil, fmt.Errorf("bad layer id %s in the transaction journal", quoteShort(f[1]))
	}
	if len(f[2]) > maxCommand || hasControl(f[2]) {
		return nil, fmt.Errorf("bad command %s in the transaction journal", quoteShort(f[2]))
	}
	t, err := time.Parse(time.RFC3339, f[3])
	if err != nil {
		return nil, fmt.Errorf("unreadable time in transaction journal %s", quoteShort(strings.TrimSpace(s)))
	}
	args := f[4:]
	if len(args) > 10000 {
		return nil, fmt.Errorf("transaction journal lists %d arguments (at most 10000)", len(args))
	}
	for _, a := range args {
		bad := len(a) > 4096 || hasControl(a)
		if f[0] != "begin" {
			bad = card.CheckID(a) != nil
		}
		if bad {
			return nil, fmt.Errorf("bad argument %s in the transaction journal", quoteShort(a))
		}
	}
	if len(args) == 0 {
		args = nil
	}
	return &Journal{Op: f[0], ID: f[1], Command: f[2], Time: t, Args: args}, nil
}

// journalCommand is how a transaction's command is written into the
// journal and history: words joined by "-", every character the journal
// does not take (validCommand) as "_", at most 64 bytes ("try install
// /tmp/x.deb" is "try-install-_tmp_x.deb").
func journalCommand(command string) string {
	b := []byte(strings.Join(strings.Fields(command), "-"))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	if len(b) == 0 {
		return "change"
	}
	return string(b)
}

// maxCommand bounds the command recorded in the journal and history
// (Begin joins the command's words with "-": ovpkg try records its
// arguments, paths of .deb files included). It is only ever shown.
const maxCommand = 4096

// validCommand: a history event's name.
func validCommand(c string) bool {
	if c == "" || len(c) > 64 {
		return false
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// hasControl reports control characters (C0, DEL, C1) or invalid UTF-8.
func hasControl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return true
		}
	}
	return false
}

// quoteShort quotes s for a one-line message, shortened.
func quoteShort(s string) string {
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return strconv.Quote(s)
}

func (c *Card) journalPath() string { return filepath.Join(c.L.Top(), "txn") }

// readJournal reads the journal beneath the card's root (a link or a
// mount point there is refused) and validates it; a refusal names the
// file.
func (c *Card) readJournal() (*Journal, error) {
	b, err := c.L.ReadFile(c.journalPath(), MaxJournal)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	j, err := parseJournal(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (a card changed elsewhere? ovpkg refuses to act on it)", c.journalPath(), err)
	}
	return j, nil
}

func (c *Card) writeJournal(j Journal) error {
	return c.L.WriteFile(c.journalPath(), []byte(j.line()), 0o644)
}

func (c *Card) removeJournal() error {
	err := c.L.Remove(c.journalPath())
	if err != nil {
		return err
	}
	return c.L.SyncDir(c.L.Top())
}

// Entry is one line of <card>/ovpkg/history.
type Entry struct {
	Event    string    `json:"event"` // "txn", "rollback", "squash", "dedupe", "rebase", "untracked", "trial", "trial-confirmed", "trial-dropped", "trial-stale"
	ID       string    `json:"id,omitempty"`
	Time     time.Time `json:"time"`
	Command  string    `json:"command,omitempty"`
	Packages []string  `json:"packages,omitempty"`
	Bytes    int64     `json:"bytes"`
	Layers   []string  `json:"layers,omitempty"` // rollback: dropped; squash: merged
	Into     string    `json:"into,omitempty"`   // squash: the new layer
	Note     string    `json:"note,omitempty"`
}

func (c *Card) historyPath() string { return filepath.Join(c.L.Top(), "history") }

// appendHistory appends e and fsyncs (beneath the card's root).
func (c *Card) appendHistory(e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return c.L.Append(c.historyPath(), append(b, '\n'), 0o644)
}

// MaxHistoryLine bounds one history line.
const MaxHistoryLine = 1 << 20

// History reads every history entry, oldest first, beneath the card's
// root. A torn last line (a crash while appending) is skipped; any other
// line that is not a valid entry (CheckEntry) is refused, naming the
// file and the line.
func (c *Card) History() ([]Entry, error) {
	f, err := c.L.Open(c.historyPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out, err := ParseHistory(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (a card changed elsewhere? ovpkg refuses to act on it)", c.historyPath(), err)
	}
	return out, nil
}

// ParseHistory reads history lines (JSON, one entry a line). A torn last
// line is skipped; a bad line elsewhere, or an entry that fails
// CheckEntry, is an error naming the line.
func ParseHistory(r io.Reader) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxHistoryLine)
	n := 0
	var pending error // a bad line: fatal unless it was the last
	for sc.Scan() {
		n++
		if pending != nil {
			return nil, pending
		}
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			pending = fmt.Errorf("line %d is not a history entry", n)
			continue
		}
		if err := CheckEntry(e); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return out, nil
}

// CheckEntry validates a history entry read from the card: its layer
// ids (ID, Layers, Into) are layer ids, its texts have no control
// characters and bounded lengths.
func CheckEntry(e Entry) error {
	if len(e.Event) > 32 || !validCommand(e.Event) {
		return fmt.Errorf("bad event %s", quoteShort(e.Event))
	}
	for _, id := range append([]string{e.ID, e.Into}, e.Layers...) {
		if id != "" && card.CheckID(id) != nil {
			return fmt.Errorf("bad layer id %s", quoteShort(id))
		}
	}
	if len(e.Layers) > card.MaxLayers*4 {
		return fmt.Errorf("%d layers listed", len(e.Layers))
	}
	if len(e.Command) > maxCommand || hasControl(e.Command) {
		return fmt.Errorf("bad command %s", quoteShort(e.Command))
	}
	if len(e.Note) > 4096 || hasControl(e.Note) {
		return fmt.Errorf("bad note %s", quoteShort(e.Note))
	}
	if len(e.Packages) > 10000 {
		return fmt.Errorf("%d packages listed", len(e.Packages))
	}
	for _, p := range e.Packages {
		if len(p) > 4096 || hasControl(p) {
			return fmt.Errorf("bad package name %s", quoteShort(p))
		}
	}
	if e.Bytes < 0 {
		return fmt.Errorf("negative size %d", e.Bytes)
	}
	return nil
}

// TxnState is a committed transaction with where its changes are now.
type TxnState struct {
	Entry
	Layer string `json:"layer"` // the layer holding it now ("" when rolled back)
	State string `json:"state"` // "live", "squashed", "rolled-back"
}

// Transactions returns the committed transactions, oldest first, with the
// layer that holds each now.
func (c *Card) Transactions() ([]TxnState, error) {
	hist, err := c.History()
	if err != nil {
		return nil, err
	}
	var out []TxnState
	where := map[string][]int{} // layer id -> indexes in out
	for _, e := range hist {
		switch e.Event {
		case "txn", "untracked":
			out = append(out, TxnState{Entry: e, Layer: e.ID, State: "live"})
			where[e.ID] = append(where[e.ID], len(out)-1)
		case "rollback":
			for _, id := range e.Layers {
				for _, i := range where[id] {
					out[i].Layer, out[i].State = "", "rolled-back"
				}
				delete(where, id)
			}
		case "squash":
			var moved []int
			for _, id := range e.Layers {
				moved = append(moved, where[id]...)
				delete(where, id)
			}
			for _, i := range moved {
				out[i].Layer, out[i].State = e.Into, "squashed"
			}
			where[e.Into] = append(where[e.Into], moved...)
		}
	}
	return out, nil
}
