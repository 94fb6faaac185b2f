package app

import (
	"fmt"
	"github.com/ovpkg/ovpkg/internal/units"
	"time"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/image"
	"github.com/ovpkg/ovpkg/layer"
	"github.com/ovpkg/ovpkg/txn"
)

func flattenCommand() *cli.Command {
	return &cli.Command{
		Name:      "flatten",
		Usage:     "write a new card image holding the merged result of the card's layers",
		UsageText: "ovpkg flatten --to NEW.img [--base] [--size SIZE] [--config FILE] [--root DIR] [--json]",
		Description: `Writes NEW.img, a new card image whose one layer holds the merged result of all the
card's layers (the card alone, not the base): move your customisations to fresh media, then
empty or retire the old card. With --base, NEW.img instead holds the merged base + card as a
plain root tree (for a new read-only base). The image is built under a temporary name and
renamed into place only when complete; progress goes to stderr. Refused when NEW.img exists,
is the card's own image, or lies on the card or under an overlaid directory.

Exit status: 0 ok, 1 failure (no NEW.img left behind), 2 usage.`,
		Flags: txnFlags(
			&cli.StringFlag{Name: "to", Usage: "the new image file (must not exist)"},
			&cli.BoolFlag{Name: "base", Usage: "write the merged base + card as a full root tree"},
			&cli.StringFlag{Name: "size", Usage: "image size (e.g. 256M, 1G; default: enough for the data, at least the card's size)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress lines"},
		),
		Action: flattenAction,
	}
}

func flattenAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("flatten takes no arguments (use --to NEW.img)")
	}
	to := c.String("to")
	if to == "" {
		return usagef("flatten: --to NEW.img is required")
	}
	var size int64
	if s := c.String("size"); s != "" {
		v, err := image.ParseSize(s)
		if err != nil {
			return usagef("flatten: --size: %v", err)
		}
		size = v
	}
	e, err := openTxn(c, false)
	if err != nil {
		return err
	}
	defer e.close()
	start := time.Now()
	var progress func(layer.Progress)
	if !c.Bool("quiet") {
		progress = func(p layer.Progress) {
			pct := 100.0
			if p.TotalBytes > 0 {
				pct = 100 * float64(p.Bytes) / float64(p.TotalBytes)
			}
			fmt.Fprintf(c.App.ErrWriter, "flatten: %d/%d files, %s/%s (%.0f%%), %s\n", p.Files, p.TotalFiles,
				units.Bytes(p.Bytes), units.Bytes(p.TotalBytes), pct, time.Since(start).Round(time.Second))
		}
	}
	res, err := e.card.Flatten(txn.FlattenOptions{To: to, WithBase: c.Bool("base"), Size: size, Progress: progress})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	what := "the card's merged layers as one layer"
	if res.Kind == "root" {
		what = "the merged base and card as a root tree"
	}
	e.say("wrote %s (%s, UUID %s): %s, %d files, %s, in %s", res.Image, units.Bytes(res.Size), res.UUID, what,
		res.Stats.Files, units.Bytes(res.Stats.Bytes), res.Took.Round(time.Millisecond))
	e.say("to use it: set SD_ROOTFS=%s and SD_UUID=%s in the config (or ovmount --trust)", res.Image, res.UUID)
	return nil
}
