package app

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/initoverlay"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/txn"
)

// bootCommands are the verbs about init-overlay's boot: boot (status,
// try, ok) and base (exec).
func bootCommands() []*cli.Command { return []*cli.Command{bootCommand(), baseCommand()} }

func bootCommand() *cli.Command {
	return &cli.Command{
		Name:      "boot",
		Usage:     "what init-overlay did at this boot; try-boot of the newest transactions",
		UsageText: "ovpkg boot status|try|ok [options]",
		Description: `init-overlay (init=/sbin/init-overlay) builds the root from the read-only base and the
card (or RAM) before the real init starts. These verbs report and steer it:

  status         what this boot did (RUN_DIR/boot-state), the card's trial
  try [N]        put the newest N transactions (default 1) on trial for the next boot(s)
  ok             confirm the trial from a booted system (e.g. a unit after multi-user)

A trial is stacked at the next boot and counted; unless a booted system runs ` + "`ovpkg boot ok`" + `
within --boots boots, init-overlay rolls the trial layers (and every transaction above them)
back at the boot after. Plain ext2 on the card, no bootloader change.`,
		Subcommands: []*cli.Command{bootStatusCommand(), bootTryCommand(), bootOKCommand()},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("boot: unknown verb %q (status, try, ok)", c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

func bootStatusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "what init-overlay did at this boot (RUN_DIR/boot-state) and the card's trial",
		UsageText: "ovpkg boot status [--config FILE] [--json]",
		Description: `Prints RUN_DIR/boot-state (default /run/ovpkg/boot-state), which init-overlay writes at
every boot: STATE (ok, fallback, disabled, off, failed), UPPER (card, tmpfs, none), the reason
of a fallback, the trial, the time it took. The file itself is shell-style KEY=VALUE lines.

Exit status: 0 ok, 1 this boot did not go through init-overlay, 2 usage.`,
		Flags: []cli.Flag{configFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("boot status takes no arguments")
			}
			opt := mountset.Options{ConfigPath: c.String("config")}
			runDir, err := mountset.RunDir(opt)
			if err != nil {
				return err
			}
			st, err := initoverlay.ReadState(runDir)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("this boot did not go through init-overlay (no %s/%s)", runDir, initoverlay.StateName)
			}
			if err != nil {
				return err
			}
			var trial *txn.Trial
			if tc, err := txn.Open(opt); err == nil {
				trial, _ = txn.ReadTrial(tc.L)
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, map[string]any{"boot": st.Values, "trial": trial})
			}
			w := c.App.Writer
			fmt.Fprintf(w, "state:    %s\nupper:    %s\n", st.Get("STATE"), st.Get("UPPER"))
			for _, kv := range [][2]string{{"reason", "REASON"}, {"card", "CARD_IMAGE"}, {"layers", "CARD_LAYERS"}, {"base", "BASE"},
				{"init", "INIT"}, {"trial", "TRIAL"}, {"dropped", "TRIAL_DROPPED"}, {"modules", "MODULES"}, {"warnings", "WARNINGS"}} {
				if v := st.Get(kv[1]); v != "" && v != txn.TrialNone {
					fmt.Fprintf(w, "%-9s %s\n", kv[0]+":", v)
				}
			}
			if t0, err := strconv.ParseFloat(st.Get("T_START_MS"), 64); err == nil {
				if t1, err := strconv.ParseFloat(st.Get("T_EXEC_MS"), 64); err == nil {
					fmt.Fprintf(w, "time:     %.1f ms (%s)\n", t1-t0, st.Get("PHASES_MS"))
				}
			}
			if trial != nil {
				fmt.Fprintf(w, "on trial: layers %s, booted %d of %d time(s); confirm with `ovpkg boot ok`\n", strings.Join(trial.Layers, " "), trial.Boots, trial.MaxBoots)
			}
			return nil
		},
	}
}

func bootTryCommand() *cli.Command {
	return &cli.Command{
		Name:      "try",
		Usage:     "put the newest N transactions (default 1) on trial for the next boot(s)",
		UsageText: "ovpkg boot try [--boots K] [--config FILE] [--json] [N]",
		Description: `Marks the newest N transaction layers of the mounted card as on trial (in <card>/ovpkg/trial).
init-overlay stacks them at the next boot and counts it; a booted system confirms them with
` + "`ovpkg boot ok`" + `. If K boots (default 1) pass without a confirmation, the boot after rolls them
back, together with every transaction made on top of them (working layers holding changes
stay, as with rollback). A trial already set is replaced.

Exit status: 0 ok, 1 failure (nothing changed), 2 usage.`,
		Flags:  txnFlags(&cli.IntFlag{Name: "boots", Value: 1, Usage: "boots that may start with the trial before it must be confirmed"}),
		Action: bootTryAction,
	}
}

func bootTryAction(c *cli.Context) error {
	n, err := countArg(c, "boot try")
	if err != nil {
		return err
	}
	if b := c.Int("boots"); b < 1 || b > txn.MaxTrialBoots {
		return usagef("boot try: --boots must be 1..%d", txn.MaxTrialBoots)
	}
	e, err := openTxn(c, false)
	if err != nil {
		return err
	}
	defer e.close()
	t, old, err := e.card.Try(n, c.Int("boots"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"trial": t, "replaced": old})
	}
	if old != nil {
		e.say("replaced the trial of layers %s", strings.Join(old.Layers, " "))
	}
	e.say("layers %s are on trial for the next %d boot(s): confirm from the booted system with `ovpkg boot ok`; without it they are rolled back at the boot after", strings.Join(t.Layers, " "), t.MaxBoots)
	if rd, err := mountset.RunDir(e.opt); err == nil {
		st, err := initoverlay.ReadState(rd)
		switch {
		case err != nil:
			e.say("note: this system did not boot through init-overlay; the trial takes effect only at a boot with init=/sbin/init-overlay and the card as its upper")
		case st.Get("UPPER") != initoverlay.UpperCard:
			e.say("note: this boot did not use the card as init-overlay's upper (%s); the trial takes effect only at a boot that does", st.Get("UPPER"))
		}
	}
	return nil
}

func bootOKCommand() *cli.Command {
	return &cli.Command{
		Name:      "ok",
		Usage:     "confirm the trial: its layers stay",
		UsageText: "ovpkg boot ok [--force] [--config FILE] [--json]",
		Description: `Confirms the card's trial (ovpkg boot try), so init-overlay keeps its layers; meant for a
unit or init script that runs once the system is up. A trial that has not been booted yet is
not confirmed (a confirmation from the boot that set it would prove nothing) unless --force.
Also clears a card setup that init-overlay found unfinished at earlier boots.

Exit status: 0 ok (also when nothing is on trial or no card is mounted), 1 failure, 2 usage.`,
		Flags: txnFlags(&cli.BoolFlag{Name: "force", Usage: "confirm a trial that has not been booted yet"}),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("boot ok takes no arguments")
			}
			e, err := openTxn(c, false)
			if errors.Is(err, txn.ErrNoCard) {
				// A RAM-only boot (BOOT_UPPER=tmpfs) or no card at all:
				// nothing can be on trial; the boot-time unit succeeds.
				fmt.Fprintln(c.App.ErrWriter, "ovpkg: no card is mounted: nothing is on trial")
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]any{"confirmed": nil, "cleared_pending": false, "card": false})
				}
				return nil
			}
			if err != nil {
				return err
			}
			defer e.close()
			cleared, err := initoverlay.ClearPending(e.card.L)
			if err != nil {
				return err
			}
			if cleared {
				e.say("cleared the card's unfinished boot setup mark")
			}
			t, err := e.card.Confirm(c.Bool("force"))
			res := map[string]any{"confirmed": nil, "cleared_pending": cleared}
			switch {
			case errors.Is(err, txn.ErrNothingToDo):
				e.say("nothing is on trial")
			case errors.Is(err, txn.ErrNotBooted):
				e.say("the trial of layers %s has not been booted yet; nothing confirmed (reboot first, or --force)", strings.Join(t.Layers, " "))
			case err != nil:
				return err
			default:
				res["confirmed"] = t.Layers
				e.say("confirmed layers %s: they stay", strings.Join(t.Layers, " "))
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, res)
			}
			return nil
		},
	}
}
