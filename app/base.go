package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/initoverlay"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/txn"
)

func baseCommand() *cli.Command {
	return &cli.Command{
		Name:      "base",
		Usage:     "update the read-only base of an init-overlay boot",
		UsageText: "ovpkg base exec [--config FILE] [--json] -- COMMAND [ARG...]",
		Description: `After a boot through init-overlay the original root is read-only at /overlay/robase.

  exec -- COMMAND...   remount it read-write, bind /proc /sys /dev /run into it (and a
                       private tmpfs on /tmp), run COMMAND chrooted there in a PID
                       namespace of its own, with services kept from starting
                       (policy-rc.d), then remount it read-only; then name every file
                       COMMAND changed in the base that the card (or the RAM upper)
                       hides from the running system, and the files rebase can merge.

The running system sees the changes at once where nothing hides them (overlayfs does not
promise a consistent view of a lower layer changed underneath; reboot to be sure).
Example: ovpkg base exec -- apt-get -y upgrade

Exit status: COMMAND's exit status; 1 failure before it ran; 2 usage.`,
		Subcommands: []*cli.Command{{
			Name:      "exec",
			Usage:     "run a command chrooted in the read-only base, made writable for it",
			UsageText: "ovpkg base exec [--config FILE] [--json] -- COMMAND [ARG...]",
			Flags:     []cli.Flag{configFlag, jsonFlag},
			Action:    baseExecAction,
		}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("base: unknown verb %q (exec)", c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

func baseExecAction(c *cli.Context) error {
	argv := c.Args().Slice()
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return usagef("base exec: no command (ovpkg base exec -- COMMAND [ARG...])")
	}
	out := c.App.Writer
	if c.Bool("json") {
		out = c.App.ErrWriter
	}
	opt := mountset.Options{ConfigPath: c.String("config"), Out: out}
	runDir, err := mountset.RunDir(opt)
	if err != nil {
		return err
	}
	st, err := initoverlay.ReadState(runDir)
	if errors.Is(err, fs.ErrNotExist) || err == nil && st.Get("BASE") == "" {
		return fmt.Errorf("this boot has no read-only base (it did not go through init-overlay, or ran the plain root): run the command directly")
	}
	if err != nil {
		return err
	}
	base := st.Get("BASE")
	if err := txn.LeaveMounts(opt); err != nil {
		return err
	}
	unlock, err := mountset.Lock(opt)
	if err != nil {
		return err
	}
	defer unlock()
	var uppers []initoverlay.Upper
	var card *txn.Card
	if tc, err := txn.Open(opt); err == nil {
		card = tc
		stack, err := tc.Stack()
		if err != nil {
			return err
		}
		for i := len(stack) - 1; i >= 0; i-- {
			uppers = append(uppers, initoverlay.Upper{Name: "card layer " + stack[i], Tree: tc.L.Tree(stack[i])})
		}
	}
	if rw := st.Get("RWDATA"); rw != "" {
		uppers = append(uppers, initoverlay.Upper{Name: "RAM upper", Tree: filepath.Join(rw, "upper")})
	}
	res, err := initoverlay.BaseExec(context.Background(), initoverlay.BaseExecOptions{Base: base, Uppers: uppers, Argv: argv, RunDir: runDir,
		Stdin: os.Stdin, Stdout: c.App.Writer, Stderr: c.App.ErrWriter})
	if err != nil {
		return err
	}
	var drift []txn.Drift
	if card != nil {
		drift, err = card.Drift()
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "ovpkg: could not compare the watched files with the base: %v\n", err)
		}
	}
	if c.Bool("json") {
		if res.Hidden == nil {
			res.Hidden = []initoverlay.Shadow{}
		}
		if drift == nil {
			drift = []txn.Drift{}
		}
		if err := printJSON(c.App.Writer, map[string]any{"result": res, "rebase": drift}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "base exec: %s exited with status %d; %s is read-only again\n", strings.Join(argv, " "), res.Code, base)
		if len(res.Hidden) == 0 {
			fmt.Fprintf(out, "nothing it changed in the base is hidden by the card or the RAM upper\n")
		} else {
			fmt.Fprintf(out, "changed in the base but hidden from the running system:\n")
			for _, h := range res.Hidden {
				fmt.Fprintf(out, "  %s (%s in %s)\n", h.Path, h.Kind, h.By)
			}
		}
		for _, d := range drift {
			fmt.Fprintf(out, "rebase can merge %s (%s); run `ovpkg rebase --check`, then `ovpkg rebase`\n", "/"+d.Path, d.Merger)
		}
		if len(res.NotStarted) > 0 {
			fmt.Fprintf(out, "services not restarted (the running system runs its own): %s\n", strings.Join(res.NotStarted, ", "))
		}
	}
	if res.StillWrite != "" {
		return errors.New(res.StillWrite)
	}
	if res.Code != 0 {
		return cli.Exit("", res.Code)
	}
	return nil
}
