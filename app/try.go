package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/internal/cli"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/pkgflow"
	"github.com/ovpkg/ovpkg/subhost"
	"github.com/ovpkg/ovpkg/txn"
)

// tryCommand is `ovpkg try`: an install tried in a throwaway subhost over
// the card's merged root, kept as a transaction only on commit.
func tryCommand() *cli.Command {
	return &cli.Command{
		Name:  "try",
		Usage: "try a package change in a throwaway subhost, then commit it to the card or discard it",
		Description: `try install runs the package manager (apt) in a subhost whose lower is the
live merged root (base plus card); nothing on the live system changes.
try shell and try run test the result inside it; try commit turns what the
try changed under the overlaid directories into a new transaction on the
card (history shows it, rollback drops it, the live system sees it at
once); try discard drops it. See docs/subhost.md.`,
		Subcommands: []*cli.Command{
			{Name: "install", Usage: "install packages (names or .deb files) in the try subhost", UsageText: "ovpkg try install [-y] PKG...",
				Flags:  []cli.Flag{configFlag, &cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "answer yes to the package manager's questions"}},
				Action: tryInstall},
			{Name: "shell", Usage: "a login shell in the try subhost", UsageText: "ovpkg try shell", Flags: []cli.Flag{configFlag},
				Action: func(c *cli.Context) error { return tryRun(c, []string{"/bin/sh", "-l"}) }},
			{Name: "run", Usage: "run a command in the try subhost", UsageText: "ovpkg try run [--] CMD [ARG...]", Flags: []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return usagef("try run takes a command")
					}
					return tryRun(c, c.Args().Slice())
				}},
			{Name: "commit", Usage: "keep the try: a new transaction on the card", UsageText: "ovpkg try commit", Flags: []cli.Flag{configFlag},
				Action: tryCommit},
			{Name: "discard", Usage: "drop the try", UsageText: "ovpkg try discard", Flags: []cli.Flag{configFlag},
				Action: tryDiscard},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown try command %q", c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

// openTry finds the mounted card and its try sandbox.
func openTry(c *cli.Context) (*subhost.Try, mountset.Options, error) {
	opt := mountset.Options{ConfigPath: c.String("config"), Out: c.App.ErrWriter}
	rec, err := mountset.Current(opt)
	if err != nil {
		return nil, opt, fmt.Errorf("try needs the card mounted (run ovmount): %w", err)
	}
	if rec.State != mountset.StateMounted {
		return nil, opt, fmt.Errorf("try needs the card's overlays mounted; they are %s (run ovmount)", rec.State)
	}
	runDir, err := mountset.RunDir(opt)
	if err != nil {
		return nil, opt, err
	}
	return &subhost.Try{Dir: subhost.TryDir(rec.CardMount), RunDir: runDir, Rec: rec, Out: c.App.ErrWriter, Config: c.String("config")}, opt, nil
}

func aptEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "container=ovpkg",
		"DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
}

func tryInstall(c *cli.Context) error {
	if c.NArg() == 0 {
		return usagef("try install takes at least one package")
	}
	t, opt, err := openTry(c)
	if err != nil {
		return err
	}
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		return fmt.Errorf("try install works with apt/dpkg systems for now: %w", err)
	}
	unlock, err := mountset.Lock(opt)
	if err != nil {
		return err
	}
	l, err := card.Open(t.Rec.CardMount)
	if err != nil {
		unlock()
		return err
	}
	stack, err := l.Layers()
	if err != nil {
		unlock()
		return err
	}
	archives := pkgflow.DefaultArchiveDir(t.Rec.CardMount)
	_, err = t.Ensure(stack, archives)
	unlock()
	if err != nil {
		return err
	}
	// Local .deb files are copied where the subhost sees them.
	local := filepath.Join(archives, "try-local")
	var hostArgs, subArgs []string
	for _, a := range c.Args().Slice() {
		if strings.HasSuffix(a, ".deb") {
			abs, err := filepath.Abs(a)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(local, 0o755); err != nil {
				return err
			}
			dst := filepath.Join(local, filepath.Base(abs))
			if err := copyFile(abs, dst); err != nil {
				return fmt.Errorf("%s: %w", a, err)
			}
			hostArgs, subArgs = append(hostArgs, abs), append(subArgs, dst)
			continue
		}
		hostArgs, subArgs = append(hostArgs, a), append(subArgs, a)
	}
	aptOpts := []string{"-q", "-o", "APT::Sandbox::User=root", "-o", "Dir::Cache::archives=" + archives, "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="}
	if c.Bool("yes") {
		aptOpts = append(aptOpts, "-y")
	}
	// Downloads on the host (the subhost has no network); only the
	// archive directory, outside every layer, is written.
	dl := exec.Command("apt-get", append(append([]string{"install", "--download-only"}, aptOpts...), hostArgs...)...)
	dl.Stdin, dl.Stdout, dl.Stderr = os.Stdin, c.App.ErrWriter, c.App.ErrWriter
	dl.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := dl.Run(); err != nil {
		return fmt.Errorf("downloading for the try (apt-get install --download-only): %w", err)
	}
	// Everything is in the archive directory now: apt inside finds it
	// there and needs no network.
	argv := append(append([]string{"apt-get", "install"}, aptOpts...), subArgs...)
	code, err := t.Run(argv, aptEnv())
	os.RemoveAll(local)
	if err != nil {
		return err
	}
	if code != 0 {
		return cli.Exit(fmt.Sprintf("apt-get in the try subhost failed (exit %d); the live system is unchanged (ovpkg try discard drops the try)", code), 1)
	}
	t.Note("install "+strings.Join(c.Args().Slice(), " "), c.Args().Slice())
	in, outside := t.Changes(t.Rec.Dirs)
	fmt.Fprintf(c.App.Writer, "tried: install %s; changed %s (not on the live system yet: ovpkg try run CMD, then ovpkg try commit or discard)\n",
		strings.Join(c.Args().Slice(), " "), orNone(in))
	if len(outside) > 0 {
		fmt.Fprintf(c.App.Writer, "outside the card's directories (dropped at commit): %s\n", strings.Join(outside, " "))
	}
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return "/" + strings.Join(s, " /")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tryRun(c *cli.Context, argv []string) error {
	t, _, err := openTry(c)
	if err != nil {
		return err
	}
	env := aptEnv()
	if v := os.Getenv("TERM"); v != "" {
		env = append(env, "TERM="+v)
	}
	code, err := t.Run(argv, env)
	if err != nil {
		return err
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

func tryCommit(c *cli.Context) error {
	t, opt, err := openTry(c)
	if err != nil {
		return err
	}
	st, err := t.State()
	if err != nil {
		return err
	}
	if err := txn.LeaveMounts(opt); err != nil {
		return err
	}
	unlock, err := mountset.Lock(opt)
	if err != nil {
		return err
	}
	defer unlock()
	cd, err := txn.Open(opt)
	if err != nil {
		return err
	}
	if err := cd.Recover(); err != nil {
		return err
	}
	stack, err := cd.Stack()
	if err != nil {
		return err
	}
	if strings.Join(stack, " ") != strings.Join(st.Stack, " ") {
		return fmt.Errorf("the card's layers changed since this try began (%v, now %v); nothing was committed (ovpkg try discard drops the try)", st.Stack, stack)
	}
	if err := t.Stop(); err != nil {
		return fmt.Errorf("stopping the try subhost: %w", err)
	}
	in, outside := t.Changes(st.Dirs)
	if len(in) == 0 {
		return fmt.Errorf("the try changed nothing under %s; nothing to commit (ovpkg try discard drops it)", orNone(st.Dirs))
	}
	tx, err := cd.BeginFilled("try "+strings.Join(st.Commands, "; "), st.Packages, t.Fill(st.Dirs))
	if err != nil {
		return fmt.Errorf("%w; the try is kept (ovpkg try commit again, or ovpkg try discard)", err)
	}
	if err := tx.Commit(); err != nil {
		if aerr := tx.Abort(); aerr != nil {
			return errors.Join(fmt.Errorf("%w; the try is kept", err), fmt.Errorf("undoing the transaction: %w", aerr))
		}
		return fmt.Errorf("%w; the try is kept (ovpkg try commit again, or ovpkg try discard)", err)
	}
	if err := t.Remove(); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "ovpkg: the try is committed, but its sandbox was not removed: %v\n", err)
	}
	fmt.Fprintf(c.App.Writer, "try committed as transaction %s (%s); the live system has it now\n", tx.ID(), orNone(in))
	if len(outside) > 0 {
		fmt.Fprintf(c.App.Writer, "dropped (outside the card's directories): %s\n", strings.Join(outside, " "))
	}
	return nil
}

func tryDiscard(c *cli.Context) error {
	t, _, err := openTry(c)
	if err != nil {
		return err
	}
	if _, err := t.State(); err != nil {
		return err
	}
	if err := t.Stop(); err != nil {
		return fmt.Errorf("stopping the try subhost: %w", err)
	}
	if err := t.Remove(); err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, "try discarded; the card and the live system are as before it")
	return nil
}
