package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ovpkg/ovpkg/internal/cli"
	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/image"
	"github.com/ovpkg/ovpkg/image/ext2"
	"github.com/ovpkg/ovpkg/loop"
	"github.com/ovpkg/ovpkg/trust"
)

func mkoverlayCommand() *cli.Command {
	return &cli.Command{
		Name:      "mkoverlay",
		Usage:     "create a card image (partition table + ext2) and record it in the config",
		ArgsUsage: "SIZE IMAGE",
		Description: `mkoverlay creates IMAGE, a card image file of SIZE holding one Linux
partition aligned at 1 MiB (an MBR/DOS table, or GPT with --gpt) formatted
as ext2 (or as journal-less ext4 with --fs ext4), and records it in the
configuration file as SD_ROOTFS=<absolute IMAGE> and SD_UUID=<filesystem
UUID>, keeping every other line of that file. ovmount then attaches it.

SIZE is in MiB when it is a bare number (128); K, M, G and T suffixes
(case-insensitive, optionally followed by iB) are powers of 1024: 512M, 2G.
It must be a whole number of MiB from 4 MiB to 2 TiB.

The image is sparse: only the partition table and filesystem metadata are
written, so even a large image is made in milliseconds and occupies a few
MB until files are stored on it. Make sure the card has room for what you
will install. No external program (dd, fdisk, mke2fs) is used.

The image is built under a temporary name in IMAGE's directory, flushed and
renamed into place; on any failure nothing is left behind and an existing
file is untouched. An existing IMAGE is refused unless --force is given.
If the configuration cannot be written the new image is removed.

Exit status: 0 on success, 1 on failure, 2 on a wrong command line.

Examples:
  mkoverlay 128 /mnt/card.img
  mkoverlay --gpt --label sdcard 2G /media/sd/ovpkg.img
  mkoverlay --config ./ovpkg.conf --json 64M ./test.img`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "gpt", Usage: "write a GPT partition table instead of MBR (DOS)"},
			&cli.StringFlag{Name: "fs", Value: image.DefaultFS, Usage: "filesystem: ext2, or ext4 (extents, no journal)"},
			&cli.StringFlag{Name: "label", Value: image.DefaultLabel, Usage: "volume label (at most 16 bytes)"},
			&cli.StringFlag{Name: "uuid", Usage: "filesystem UUID (default: random)"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "replace an existing IMAGE file"},
			configFlag,
			jsonFlag,
		},
		Action: runMkoverlay,
		// As a subcommand of ovpkg, report flag errors as one line too.
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return &UsageError{Msg: err.Error()} },
	}
}

// mkoverlayResult is what --json prints: the image's Info plus the
// configuration file that now names it.
type mkoverlayResult struct {
	*image.Info
	Config string `json:"config"`
}

func runMkoverlay(c *cli.Context) (retErr error) {
	args := c.Args().Slice()
	if len(args) != 2 {
		return usagef("expected SIZE and IMAGE (e.g. mkoverlay 128 /mnt/card.img), got %d argument(s)", len(args))
	}
	size, err := image.ParseSize(args[0])
	if err != nil {
		return usagef("%v", err)
	}
	opt := image.Options{
		Size:  size,
		Table: image.TableDOS,
		FS:    c.String("fs"),
		Label: c.String("label"),
		UUID:  c.String("uuid"),
		Force: c.Bool("force"),
	}
	if c.Bool("gpt") {
		opt.Table = image.TableGPT
	}
	if opt.FS != "ext2" && opt.FS != "ext4" {
		return usagef("--fs %q: choose ext2 or ext4", opt.FS)
	}
	if len(opt.Label) > 16 {
		return usagef("--label %q is longer than 16 bytes", opt.Label)
	}
	if opt.UUID != "" {
		if _, err := image.ParseUUID(opt.UUID); err != nil {
			return usagef("--uuid: %v", err)
		}
	}

	// Read the config first: a broken one stops us before anything is made.
	cfgPath := config.Resolve(c.String(configFlag.Name))
	if abs, err := filepath.Abs(cfgPath); err == nil {
		cfgPath = abs
	}
	cfg, err := config.Load(cfgPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	oldCfg, oldErr := os.ReadFile(cfgPath)

	// --force must not pull a card out from under a loop device.
	if opt.Force {
		if devs, err := loop.Lookup(args[1]); err == nil && len(devs) > 0 {
			return fmt.Errorf("image %s is attached to %s; detach it first (ovpkg eject), then run mkoverlay --force again",
				args[1], devs[0].Path)
		}
	}
	pending, err := image.Prepare(args[1], opt)
	if err != nil {
		return err
	}
	info := pending.Info()
	cfg.Set(config.KeyImage, info.Path)
	cfg.Set(config.KeyUUID, info.UUID)
	if err := cfg.Save(); err != nil {
		pending.Abort()
		return fmt.Errorf("%v; the new image %s was not kept", err, info.Path)
	}
	if _, err := pending.Commit(); err != nil {
		// Put the config back as it was: it must not name a missing image.
		if oldErr == nil {
			if old, perr := config.Parse(cfgPath, strings.NewReader(string(oldCfg))); perr == nil {
				old.Save()
			}
		} else {
			os.Remove(cfgPath)
		}
		return err
	}
	if st, err := os.Stat(info.Path); err == nil {
		if sys, ok := st.Sys().(*unix.Stat_t); ok {
			info.DiskUsage = sys.Blocks * 512
		}
	}
	// This host made the card: remember it as seen, so its first ovmount
	// keeps setuid working (the trust package).
	if err := rememberNew(cfg, info); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "%s: warning: %v; the first ovmount mounts the card with setuid off unless --trust\n", c.App.Name, err)
	}

	if c.Bool(jsonFlag.Name) {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(mkoverlayResult{Info: info, Config: cfgPath})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "created %s: %s, %s table, partition %d at %s (%s), %s label %q\n",
		info.Path, image.FormatSize(info.Size), info.Table, info.PartIndex,
		image.FormatSize(info.PartStart), image.FormatSize(info.PartSize), info.FSType, info.Label)
	fmt.Fprintf(w, "UUID %s, %d inodes, %s blocks; %d KiB on disk (sparse)\n",
		info.UUID, info.InodesCount, humanBlockSize(info.BlockSize), info.DiskUsage/1024)
	fmt.Fprintf(w, "recorded in %s: %s=%s %s=%s\n", cfgPath, config.KeyImage, info.Path, config.KeyUUID, info.UUID)
	var sfs unix.Statfs_t
	if unix.Statfs(filepath.Dir(info.Path), &sfs) == nil {
		if free := int64(sfs.Bavail) * int64(sfs.Bsize); free < info.Size {
			fmt.Fprintf(c.App.ErrWriter, "%s: warning: %s has only %s free; the image can grow to %s\n",
				c.App.Name, filepath.Dir(info.Path), humanBytes(free), image.FormatSize(info.Size))
		}
	}
	return nil
}

func humanBlockSize(n int64) string { return fmt.Sprintf("%d KiB", n/1024) }

func humanBytes(n int64) string {
	switch {
	case n >= image.GiB:
		return fmt.Sprintf("%.1f GiB", float64(n)/float64(image.GiB))
	case n >= image.MiB:
		return fmt.Sprintf("%.1f MiB", float64(n)/float64(image.MiB))
	}
	return fmt.Sprintf("%d KiB", n/1024)
}

// rememberNew records the new card in the host's memory (TRUST_DIR) as
// seen, with no ovpkg metadata on it yet.
func rememberNew(cfg *config.File, info *image.Info) error {
	dir := trust.Default()
	if v, ok := cfg.Get(config.KeyTrustDir); ok && strings.TrimSpace(v) != "" {
		dir = strings.TrimSpace(v)
	}
	if dir == "" {
		return nil // test builds without a trust directory
	}
	st, err := trust.Open(dir, true)
	if err != nil {
		return err
	}
	f, err := os.Open(info.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	raw := make([]byte, ext2.SuperblockSize)
	if _, err := f.ReadAt(raw, info.PartStart+ext2.SuperblockOffset); err != nil {
		return fmt.Errorf("reading the superblock of %s: %w", info.Path, err)
	}
	card, err := st.Super(raw)
	if err != nil {
		return err
	}
	st.Empty(&card)
	return st.Remember(card, "mkoverlay")
}
