package app

import (
	"encoding/json"
	"fmt"
	"github.com/ovpkg/ovpkg/internal/units"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/subhost"
)

// subhostCommand is `ovpkg subhost`: overlay-boot's subhosts (issue 12).
// overlay-boot, overlay-go and overlay-stop are its start, enter and stop
// under overlay-boot's own names.
func subhostCommand() *cli.Command {
	return &cli.Command{
		Name:  "subhost",
		Usage: "light containers over the root (overlay-boot compatible)",
		Description: `A subhost is a set of services run in their own namespaces (network,
mount, PID, IPC, UTS, time, cgroup) over an overlay of the host's root,
defined by an overlay-boot config file. See docs/subhost.md.`,
		Subcommands: []*cli.Command{
			subhostStartCommand("start"),
			subhostEnterCommand("enter"),
			subhostStopCommand("stop"),
			subhostListCommand(),
			subhostCheckCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown subhost command %q", c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

func overlayBootCommand() *cli.Command { return subhostStartCommand("overlay-boot") }
func overlayGoCommand() *cli.Command   { return subhostEnterCommand("overlay-go") }
func overlayStopCommand() *cli.Command { return subhostStopCommand("overlay-stop") }

// subhostRunDir is RUN_DIR of the ovpkg config (--config).
func subhostRunDir(c *cli.Context) (string, error) {
	return mountset.RunDir(mountset.Options{ConfigPath: c.String("config")})
}

func subhostStartCommand(name string) *cli.Command {
	usage := "ovpkg subhost start [--foreground] [--card] CONF"
	if name != "start" {
		usage = name + " [--foreground] [--card] CONF"
	}
	return &cli.Command{
		Name:      name,
		Usage:     "start the subhost a config file defines",
		UsageText: usage,
		Description: `CONF is an overlay-boot config file, or a bare name looked up as
/etc/ovpkg/subhosts/NAME.conf. Every problem check finds is reported before
anything is made. Without --foreground the command returns once the
subhost is up (its services started), with its supervisor in the
background; with --foreground it is the supervisor and returns when the
subhost has ended (for systemd, Type=notify).`,
		Flags: []cli.Flag{configFlag,
			&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "stay with the subhost until it ends (systemd: Type=notify)"},
			&cli.BoolFlag{Name: "card", Usage: "lower the subhost onto the host's root with the card's layers (what the card installed)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "without --foreground: how long to wait for the subhost to be up"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("%s takes one config file", name)
			}
			path := subhost.ResolvePath(c.Args().First())
			if c.Bool("foreground") {
				return subhostSupervise(c, path)
			}
			// Read without running helpers: the supervisor runs them once.
			cfg, err := subhost.LoadConfig(path, subhost.Options{})
			if err != nil {
				return err
			}
			argv := []string{"ovpkg", "subhost", "start", "--foreground"}
			if c.Bool("card") {
				argv = append(argv, "--card")
			}
			if v := c.String("config"); v != "" {
				argv = append(argv, "--config", v)
			}
			argv = append(argv, cfg.Path)
			log := cfg.Log
			if cfg.Helpers["LOG"] || cfg.Helpers["NAME"] {
				log = os.DevNull
			}
			pid, err := subhost.Detach("/proc/self/exe", argv, log, c.Duration("timeout"))
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "subhost %s started (supervisor pid %d, log %s)\n", cfg.Name, pid, cfg.Log)
			return nil
		},
	}
}

// subhostSupervise is `start --foreground`: load (helpers run), check,
// supervise.
func subhostSupervise(c *cli.Context, path string) (retErr error) {
	defer func() {
		if retErr != nil {
			msg := strings.ReplaceAll(retErr.Error(), "\n", "; ")
			subhost.Notify("STATUS=" + msg)
		}
	}()
	sc, err := loadChecked(c, path, subhost.Options{Action: subhost.ActionStart, Stderr: c.App.ErrWriter})
	if err != nil {
		return err
	}
	cfg, card, runDir, ps := sc.cfg, sc.card, sc.runDir, sc.problems
	for _, p := range ps {
		if p.Warning {
			fmt.Fprintln(c.App.ErrWriter, p.Error())
		}
	}
	if errs := subhost.Errors(ps); len(errs) > 0 {
		var msgs []string
		for _, p := range errs {
			msgs = append(msgs, p.Error())
		}
		return fmt.Errorf("%d problem(s), nothing was started: %s", len(errs), strings.Join(msgs, "; "))
	}
	return subhost.Supervise(cfg, subhost.StartOptions{RunDir: runDir, Card: card, Out: c.App.ErrWriter,
		Ready: func(st *subhost.State) {
			subhost.Notify(fmt.Sprintf("READY=1\nSTATUS=subhost %s running\nMAINPID=%d", st.Name, os.Getpid()))
		}})
}

// checked is a loaded config with what check found.
type checked struct {
	cfg      *subhost.Config
	card     *subhost.Card
	runDir   string
	problems []subhost.Problem
}

// loadChecked loads a subhost config (helpers run when opt.Action is
// set), the card's view with --card, and checks it for a start.
func loadChecked(c *cli.Context, path string, opt subhost.Options) (*checked, error) {
	runDir, err := subhostRunDir(c)
	if err != nil {
		return nil, err
	}
	cfg, err := subhost.LoadConfig(path, opt)
	if err != nil {
		return nil, err
	}
	sc := &checked{cfg: cfg, runDir: runDir}
	if c.Bool("card") {
		if sc.card, err = cardView(c); err != nil {
			return nil, err
		}
	}
	sc.problems = subhost.Check(cfg, subhost.CheckOptions{RunDir: runDir, Card: sc.card, Starting: true})
	return sc, nil
}

// cardView is the card's merged root, for --card and try: the mounted
// card's overlays, each directory's current upper and lower layers.
func cardView(c *cli.Context) (*subhost.Card, error) {
	rec, err := mountset.Current(mountset.Options{ConfigPath: c.String("config")})
	if err != nil {
		return nil, fmt.Errorf("--card: %w", err)
	}
	if rec.State != mountset.StateMounted {
		return nil, fmt.Errorf("--card: the card's overlays are %s (run ovmount)", rec.State)
	}
	return subhost.CardFromRecord(rec)
}

func subhostEnterCommand(name string) *cli.Command {
	usage := "ovpkg subhost enter NAME [-- CMD [ARG...]]"
	if name != "enter" {
		usage = name + " NAME [-- CMD [ARG...]]"
	}
	return &cli.Command{
		Name:      name,
		Usage:     "run a command (default: a login shell) inside a running subhost",
		UsageText: usage,
		Flags:     []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return usagef("%s takes the subhost's name", name)
			}
			runDir, err := subhostRunDir(c)
			if err != nil {
				return err
			}
			args := c.Args().Slice()
			n := subhostName(args[0])
			argv := args[1:]
			if len(argv) > 0 && argv[0] == "--" {
				argv = argv[1:]
			}
			env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "container=ovpkg"}
			if t := os.Getenv("TERM"); t != "" {
				env = append(env, "TERM="+t)
			}
			code, err := subhost.Enter(runDir, n, argv, env)
			if err != nil {
				return err
			}
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

// subhostName takes NAME, or a config file (its NAME).
func subhostName(arg string) string {
	if strings.Contains(arg, "/") || strings.HasSuffix(arg, ".conf") {
		if cfg, err := subhost.LoadConfig(subhost.ResolvePath(arg), subhost.Options{}); err == nil && !cfg.Helpers["NAME"] {
			return cfg.Name
		}
		return strings.TrimSuffix(filepath.Base(arg), ".conf")
	}
	return arg
}

func subhostStopCommand(name string) *cli.Command {
	usage := "ovpkg subhost stop CONF|NAME"
	if name != "stop" {
		usage = name + " CONF|NAME"
	}
	return &cli.Command{
		Name:      name,
		Usage:     "stop a subhost: its services in reverse order, then every process; remove its cables and namespace",
		UsageText: usage,
		Flags: []cli.Flag{configFlag,
			&cli.DurationFlag{Name: "timeout", Usage: "how long to wait for a graceful stop before killing (default: twice STOP_TIMEOUT plus 5s)"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("%s takes one config file or subhost name", name)
			}
			runDir, err := subhostRunDir(c)
			if err != nil {
				return err
			}
			n := subhostName(c.Args().First())
			if st, err := subhost.ReadState(runDir, n); err == nil && (st.State == subhost.StateStopped || st.State == subhost.StateFailed) {
				if _, rerr := subhost.Running(runDir, n); rerr != nil {
					fmt.Fprintf(c.App.Writer, "subhost %s is not running (%s)\n", n, st.State)
					return nil
				}
			}
			st, err := subhost.Stop(n, subhost.StopOptions{RunDir: runDir, Timeout: c.Duration("timeout"), Out: c.App.ErrWriter})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "subhost %s stopped: %s\n", n, st.Reason)
			return nil
		},
	}
}

func subhostListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list subhosts: state, PID, uptime, cables, upper usage",
		UsageText: "ovpkg subhost list [--json]",
		Flags:     []cli.Flag{configFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("list takes no arguments")
			}
			runDir, err := subhostRunDir(c)
			if err != nil {
				return err
			}
			infos, err := subhost.List(runDir)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, infos)
			}
			printSubhosts(c.App.Writer, infos)
			return nil
		},
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printSubhosts(w io.Writer, infos []subhost.Info) {
	if len(infos) == 0 {
		fmt.Fprintln(w, "no subhosts")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUPTIME\tCABLES\tUPPER\tCONFIG")
	for _, in := range infos {
		pid, up := "-", "-"
		if in.PID > 0 {
			pid = fmt.Sprint(in.PID)
			up = (time.Duration(in.Uptime) * time.Second).String()
		}
		var cs []string
		for _, c := range in.Cables {
			s := c.Host + "-" + c.Sub
			if c.Bridge != "" {
				s = c.Bridge + ":" + s
			}
			cs = append(cs, s)
		}
		cables := strings.Join(cs, ",")
		if cables == "" {
			cables = "-"
		}
		state := in.State
		if in.Reason != "" && in.State != subhost.StateRunning {
			state += " (" + in.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Name, state, pid, up, cables, units.Bytes(in.UpperBytes), in.Config)
	}
	tw.Flush()
}

func subhostCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "report every problem of a subhost config without changing anything",
		UsageText: "ovpkg subhost check [--card] [--json] CONF",
		Description: "Values that come from `!` helpers are not checked (the helpers are not run).\n" +
			"Exit status 0 when there are no errors (warnings allowed), 1 otherwise.",
		Flags: []cli.Flag{configFlag, jsonFlag,
			&cli.BoolFlag{Name: "card", Usage: "check for a start with --card"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("check takes one config file")
			}
			sc, err := loadChecked(c, subhost.ResolvePath(c.Args().First()), subhost.Options{})
			if err != nil {
				return err
			}
			cfg, ps := sc.cfg, sc.problems
			if c.Bool("json") {
				if ps == nil {
					ps = []subhost.Problem{}
				}
				if err := writeJSON(c.App.Writer, ps); err != nil {
					return err
				}
			} else {
				for _, p := range ps {
					fmt.Fprintln(c.App.Writer, p.Error())
				}
			}
			if n := len(subhost.Errors(ps)); n > 0 {
				return cli.Exit(fmt.Sprintf("%s: %d problem(s)", cfg.Path, n), 1)
			}
			if !c.Bool("json") {
				fmt.Fprintf(c.App.Writer, "%s: subhost %s: no problems found\n", cfg.Path, cfg.Name)
			}
			return nil
		},
	}
}
