package app

import (
	"errors"
	"fmt"
	"github.com/ovpkg/ovpkg/internal/units"
	"strings"
	"text/tabwriter"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/txn"
)

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "list the transactions on the card (time, command, packages, bytes, layer)",
		UsageText: "ovpkg history [--config FILE] [--root DIR] [--json]",
		Description: `Every install, remove or upgrade ovpkg makes is a transaction kept in its own layer
on the card. history lists them oldest first with the layer holding each now: "live" (its
own layer, can be rolled back), "squashed" (merged with others by commit or the automatic
squash), "rolled-back". It also finishes or undoes what an interrupted command left.

Exit status: 0 ok, 1 failure (no card mounted), 2 usage.`,
		Flags:  txnFlags(),
		Action: historyAction,
	}
}

type historyJSON struct {
	Stack        []string       `json:"stack"`
	Transactions []txn.TxnState `json:"transactions"`
	// Lingering are old overlays detached by a restack while processes
	// held them (they keep the card busy until those exit).
	Lingering []mountset.Lingering `json:"lingering,omitempty"`
}

func historyAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("history takes no arguments")
	}
	e, err := openTxn(c, false)
	if errors.Is(err, mountset.ErrLocked) {
		// read-only view while another ovpkg runs
		opt := mountset.Options{ConfigPath: c.String("config"), Root: c.String("root")}
		card, oerr := txn.Open(opt)
		if oerr != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "history: %v; showing the history without recovering\n", err)
		e = &txnEnv{card: card, out: c.App.ErrWriter}
	} else if err != nil {
		return err
	}
	defer e.close()
	stack, err := e.card.Stack()
	if err != nil {
		return err
	}
	ts, err := e.card.Transactions()
	if err != nil {
		return err
	}
	lingering, _ := e.card.Lingering()
	if c.Bool("json") {
		if ts == nil {
			ts = []txn.TxnState{}
		}
		return printJSON(c.App.Writer, historyJSON{Stack: stack, Transactions: ts, Lingering: lingering})
	}
	w := tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tTIME\tCOMMAND\tPACKAGES\tBYTES\tSTATE")
	for _, t := range ts {
		state := t.State
		if t.State == "squashed" {
			state += " into " + t.Layer
		}
		if t.Event == "untracked" {
			state = "in layer " + t.Layer + " (no own layer)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Time.Local().Format("2006-01-02 15:04:05"), t.Command,
			strings.Join(t.Packages, " "), units.Bytes(t.Bytes), state)
	}
	w.Flush()
	fmt.Fprintf(c.App.Writer, "layers (bottom to top): %s\n", strings.Join(stack, " "))
	for _, l := range lingering {
		fmt.Fprintf(c.App.Writer, "lingering:  %s (layers %s; eject waits for it)\n", l, strings.Join(l.Layers, " "))
	}
	return nil
}
