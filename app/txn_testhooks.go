//go:build ovpkg_testhooks

package app

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/txn"
)

// Test verbs exist only in builds with the ovpkg_testhooks tag (what
// `make test` builds); the product has none.
func init() { testCommands = append(testCommands, txnTestCommand) }

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
