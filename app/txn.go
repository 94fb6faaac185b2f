package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/pkgmgr"
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
		txnTestCommand(),
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

func human(n int64) string { return pkgmgr.HumanSize(n) }

// txnTestCommand is a hidden verb for tests and benchmarks: a trivial
// "install" that writes one file through the overlays inside a
// transaction (OVPKG_TEST_CRASH_AT=pm kills it half-way through).
func txnTestCommand() *cli.Command {
	return &cli.Command{
		Name:      "__txn-test",
		Hidden:    true,
		ArgsUsage: "PATH CONTENT | --exec 'COMMAND' NAME...",
		Flags: txnFlags(
			&cli.BoolFlag{Name: "fail", Usage: "fail after writing (the transaction is undone)"},
			&cli.StringFlag{Name: "exec", Usage: "run this shell command inside the transaction instead of writing PATH"},
		),
		Action: func(c *cli.Context) error {
			opt := mountset.Options{ConfigPath: c.String("config"), Root: c.String("root"), Out: c.App.ErrWriter}
			if cmd := c.String("exec"); cmd != "" {
				return txn.Run(opt, "test-exec", c.Args().Slice(), func() error {
					sh := exec.Command("/bin/sh", "-c", cmd)
					sh.Stdout, sh.Stderr = c.App.Writer, c.App.ErrWriter
					return sh.Run()
				})
			}
			if c.NArg() != 2 {
				return usagef("__txn-test PATH CONTENT")
			}
			path, content := c.Args().Get(0), c.Args().Get(1)
			return txn.Run(opt, "test-install", []string{filepath.Base(path)}, func() error {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					return err
				}
				txn.Crash("pm")
				if c.Bool("fail") {
					return errors.New("test install failed on purpose")
				}
				return nil
			})
		},
	}
}
