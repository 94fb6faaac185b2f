package txn

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
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

func parseJournal(s string) (*Journal, error) {
	f := strings.Fields(s)
	if len(f) < 4 || (f[0] != "begin" && f[0] != "squash" && f[0] != "rollback") {
		return nil, fmt.Errorf("unreadable transaction journal %q", strings.TrimSpace(s))
	}
	t, err := time.Parse(time.RFC3339, f[3])
	if err != nil {
		return nil, fmt.Errorf("unreadable time in transaction journal %q", strings.TrimSpace(s))
	}
	return &Journal{Op: f[0], ID: f[1], Command: f[2], Time: t, Args: f[4:]}, nil
}

func (c *Card) journalPath() string { return filepath.Join(c.L.Top(), "txn") }

func (c *Card) readJournal() (*Journal, error) {
	b, err := os.ReadFile(c.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseJournal(string(b))
}

func (c *Card) writeJournal(j Journal) error {
	return writeAtomic(c.journalPath(), []byte(j.line()))
}

func (c *Card) removeJournal() error {
	err := os.Remove(c.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		syncDir(c.L.Top())
	}
	return err
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

// appendHistory appends e and fsyncs.
func (c *Card) appendHistory(e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, serr := os.Lstat(c.historyPath())
	created := errors.Is(serr, fs.ErrNotExist)
	f, err := os.OpenFile(c.historyPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if created {
		defer syncDir(c.L.Top())
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// History reads every history entry, oldest first. A torn last line (a
// crash while appending) is skipped.
func (c *Card) History() ([]Entry, error) {
	f, err := os.Open(c.historyPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out, sc.Err()
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
