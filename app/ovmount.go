package app

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/txn"
)

var (
	forceFlag = &cli.BoolFlag{
		Name:  "force",
		Usage: "mount a card whose filesystem was not cleanly unmounted without checking it first",
	}
	trustFlag = &cli.BoolFlag{
		Name:  "trust",
		Usage: "approve the card: setuid, setgid and file capabilities work on it (and an image whose UUID differs from SD_UUID is mounted)",
	}
)

func ovmountCommand() *cli.Command {
	return &cli.Command{
		Name:      "ovmount",
		Aliases:   []string{"mount"},
		Usage:     "attach the card image and overlay the root directories",
		UsageText: "ovmount [--config FILE] [--root DIR] [--force] [--trust] [--json]",
		Description: `Reads the config (SD_ROOTFS, SD_UUID, MOUNTPOINT, OVERLAY_DIRS, RUN_DIR) after checking
it is a root-owned, not group/world-writable regular file; validates the image's partition
table and filesystem; attaches its partition to a loop device (autoclear); mounts it on
MOUNTPOINT (default /overlay; noatime,nosuid,nodev,noexec,errors=remount-ro); and mounts one
overlayfs over each overlaid directory (default usr etc var opt, plus bin sbin lib lib64 where
they are real directories), upper layers on the card. What was mounted is recorded in
RUN_DIR/mounts.json for uovmount and eject.

All or nothing: if any step fails, everything done so far is undone (loop device included).
Idempotent: when the card is already mounted, says so and changes nothing. A card whose
filesystem was not cleanly unmounted is checked with e2fsck -p first (refused with the repair
command when that fails or e2fsck is missing; --force mounts it unchecked). An image whose
UUID differs from SD_UUID is refused unless --trust. The image file and every directory above
it must be root's and writable by nobody else (for a FAT card: mount it with
uid=0,gid=0,fmask=0077,dmask=0077), else ovmount refuses and says how to fix it.

Setuid gate: the host remembers each card at its clean eject (and after mkoverlay) in
TRUST_DIR (default /var/lib/ovpkg, root-only, never on the card): its superblock, a MAC of
ovpkg's metadata and of its setuid/setgid/capability files. A card changed elsewhere since,
or never seen, is mounted with its overlays nosuid (setuid, setgid and file capabilities
ignored, the base's own such as su too) and ovmount says so in one line. --trust approves it:
setuid works (on an already mounted card the overlays lose nosuid in place), and the next
clean eject remembers it. --json shows the decision as card_trust.

--boot is for init systems (the systemd unit, sysvinit and OpenWrt init scripts ovpkg ships):
without a config, or with no SD_ROOTFS in it, ovmount says there is nothing to mount and exits
0; otherwise it waits up to 30 seconds for the image file to appear, then mounts as usual.

Exit status: 0 mounted (or already mounted), 1 failure (nothing left mounted), 2 usage.`,
		Flags:  []cli.Flag{configFlag, rootFlag, forceFlag, trustFlag, jsonFlag, bootFlag},
		Action: ovmountAction,
	}
}

// mountsetOptions builds mountset.Options from the shared flags.
func mountsetOptions(c *cli.Context) mountset.Options {
	var out io.Writer = c.App.Writer
	if c.Bool("json") {
		out = io.Discard
	}
	return mountset.Options{
		ConfigPath: c.String("config"),
		Root:       c.String("root"),
		Force:      c.Bool("force"), // false for commands without the flag
		Trust:      c.Bool("trust"),
		Out:        out,
	}
}

func ovmountAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("ovmount takes no arguments (got %q); the image comes from the config", c.Args().First())
	}
	if c.Bool("boot") {
		if skip, err := bootCheck(c); skip || err != nil {
			return err
		}
	}
	opt := mountsetOptions(c)
	rec, err := mountset.Up(opt)
	if err != nil {
		return err
	}
	// Finish or undo what an interrupted transaction left, and report base
	// files that changed under the card. The card is mounted either way,
	// so a problem here is a warning, not a failure of ovmount.
	if err := txn.AfterMount(opt, c.App.ErrWriter); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "ovmount: warning: %v\n", err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, rec)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
