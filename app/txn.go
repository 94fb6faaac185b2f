package app

import (
	"fmt"
	"io"
	"os"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/txn"
)

// txnCommands are the layer and transaction verbs (issue 5).
func txnCommands() []*cli.Command {
	return []*cli.Command{
		historyCommand(),
		rollbackCommand(),
		commitCommand(),
		flattenCommand(),
		dedupeCommand(),
		rebaseCommand(),
	}
}

// txnEnv is an open card for a txn verb, with the ovpkg lock held.
type txnEnv struct {
	opt    mountset.Options
	card   *txn.Card
	unlock func()
	out    io.Writer // human messages
}

func (e *txnEnv) close() {
	if e.unlock != nil {
		e.unlock()
	}
	reportRSS(os.Stderr) // test builds with OVPKG_TEST_REPORT_RSS only
}

func (e *txnEnv) say(format string, a ...any) { fmt.Fprintf(e.out, format+"\n", a...) }

// openTxn opens the mounted card for a txn verb: re-executes from memory
// first when the binary lives on an overlay (a restack, by the verb or by
// recovery, would otherwise be refused), takes the lock, and recovers what
// an interrupted command left. restack is kept for the callers' clarity.
func openTxn(c *cli.Context, restack bool) (*txnEnv, error) {
	out := c.App.Writer
	if c.Bool("json") {
		out = c.App.ErrWriter
	}
	e := &txnEnv{out: out}
	e.opt = mountset.Options{ConfigPath: c.String("config"), Root: c.String("root"), Out: out}
	_ = restack
	if err := txn.LeaveMounts(e.opt); err != nil {
		return nil, err
	}
	unlock, err := mountset.Lock(e.opt)
	if err != nil {
		return nil, err
	}
	e.unlock = unlock
	e.card, err = txn.Open(e.opt)
	if err != nil {
		e.close()
		return nil, err
	}
	if err := e.card.Recover(); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func txnFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{configFlag, rootFlag, jsonFlag}, extra...)
}
