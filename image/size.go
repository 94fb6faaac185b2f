package image

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

const (
	KiB = int64(1) << 10
	MiB = int64(1) << 20
	GiB = int64(1) << 30
	TiB = int64(1) << 40

	// MinSize is the smallest card mkoverlay makes: 1 MiB for the
	// partition table and alignment plus a 3 MiB filesystem (3072 1 KiB
	// blocks, 768 inodes), room for the on-card layout and a few small
	// packages. Smaller ext2 filesystems are "floppy" sized even to
	// mke2fs and would hold nothing useful.
	MinSize = 4 * MiB
	// MaxSize is the largest: an MBR partition ends within 2^32 sectors
	// of 512 bytes (2 TiB); GPT cards keep the same limit so that --gpt
	// never changes what SIZE means.
	MaxSize = 2 * TiB
)

// ParseSize reads a card size: a bare number is MiB ("128"); K, M, G
// and T suffixes (case-insensitive, optionally followed by "iB") are
// powers of 1024 ("512M", "2G", "1.5" is refused: whole numbers only).
// The result is in bytes, a whole number of MiB, within MinSize..MaxSize.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("size is empty (give MiB as a number, or 512M, 2G)")
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("size %q is negative (give MiB as a number, or 512M, 2G)", s)
	}
	t = strings.TrimPrefix(t, "+")
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	digits, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if digits == "" {
		return 0, fmt.Errorf("size %q is not a number (give MiB as a number, or 512M, 2G)", s)
	}
	mult := MiB
	switch strings.TrimSuffix(unit, "ib") {
	case "":
		if unit != "" {
			return 0, fmt.Errorf("size %q has an unknown unit (use K, M, G or T)", s)
		}
	case "k":
		mult = KiB
	case "m":
		mult = MiB
	case "g":
		mult = GiB
	case "t":
		mult = TiB
	default:
		if strings.HasPrefix(unit, ".") || strings.HasPrefix(unit, ",") {
			return 0, fmt.Errorf("size %q is not a whole number (write 1536M rather than 1.5G)", s)
		}
		return 0, fmt.Errorf("size %q has an unknown unit (use K, M, G or T, powers of 1024)", s)
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	hi, v := bits.Mul64(n, uint64(mult))
	if err != nil || hi != 0 || v > uint64(MaxSize) {
		return 0, fmt.Errorf("size %q is too large (at most %s)", s, FormatSize(MaxSize))
	}
	size := int64(v)
	switch {
	case size == 0:
		return 0, fmt.Errorf("size %q is zero (the smallest card is %s)", s, FormatSize(MinSize))
	case size%MiB != 0:
		return 0, fmt.Errorf("size %q is not a whole number of MiB", s)
	case size < MinSize:
		return 0, fmt.Errorf("size %q is below the smallest card, %s", s, FormatSize(MinSize))
	}
	return size, nil
}

// FormatSize renders bytes in the largest binary unit that divides them
// ("128 MiB", "2 GiB", "1536 MiB").
func FormatSize(n int64) string {
	for _, u := range []struct {
		v    int64
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if n >= u.v && n%u.v == 0 {
			return fmt.Sprintf("%d %s", n/u.v, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
