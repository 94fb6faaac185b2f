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
	f := strings.Fields(s)
	if len(s) > MaxJournal || len(f) < 4 || len(f) > 10004 || (f[0] != "begin" && f[0] != "squash" && f[0] != "rollback") {
		return nil, errors.New("unreadable transaction journal " + quoteShort(strings.TrimSpace(s)))
	}
	t, err := time.Parse(time.RFC3339, f[3])
	if err != nil {
		return nil, errors.New("unreadable time in transaction journal " + quoteShort(f[3]))
	}
	if bad := badField("layer id", f[1], true); bad != nil {
		return nil, bad
	}
	if bad := badField("command", f[2], false); bad != nil {
		return nil, bad
	}
	args := f[4:]
	for _, a := range args {
		if bad := badField("argument", a, f[0] != "begin"); bad != nil {
			return nil, bad
		}
	}
	if len(args) == 0 {
		args = nil
	}
	return &Journal{Op: f[0], ID: f[1], Command: f[2], Time: t, Args: args}, nil
}

// journalCommand is how a transaction's command is written into the
// journal and history: words joined by "-", every character outside
// [A-Za-z0-9._-] as "_", at most 64 bytes ("try install
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

// badField checks a name read from a card file: a layer id (isID), or a
// text of at most maxCommand bytes without control characters.
func badField(what, v string, isID bool) error {
	if isID && card.CheckID(v) != nil || !isID && (len(v) > maxCommand || hasControl(v)) {
		return errors.New("bad " + what + " " + quoteShort(v))
	}
	return nil
}

// maxCommand bounds the command recorded in the journal and history
// (Begin joins the command's words with "-": ovpkg try records its
// arguments, paths of .deb files included). It is only ever shown.
const maxCommand = 4096

// validCommand: a history event's name, or a command as journalCommand writes it.
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

// MaxHistory bounds the history file (a line is about 200 bytes).
const MaxHistory = 64 << 20

// MaxHistoryLine bounds one history line.
const MaxHistoryLine = 1 << 20

// History reads every history entry, oldest first, beneath the card's
// root. A torn last line (a crash while appending) is skipped; any other
// line that is not a valid entry (CheckEntry) is refused, naming the
// file and the line.
func (c *Card) History() ([]Entry, error) {
	b, err := c.L.ReadFile(c.historyPath(), MaxHistory)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out, err := ParseHistory(bytes.NewReader(b))
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
	if !validCommand(e.Event) || e.Bytes < 0 || len(e.Layers) > 4*card.MaxLayers || len(e.Packages) > 10000 {
		return errors.New("bad entry for event " + quoteShort(e.Event))
	}
	for _, id := range append([]string{e.ID, e.Into}, e.Layers...) {
		if bad := badField("layer id", id, true); id != "" && bad != nil {
			return bad
		}
	}
	for _, t := range append([]string{e.Command, e.Note}, e.Packages...) {
		if bad := badField("text", t, false); bad != nil {
			return bad
		}
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
