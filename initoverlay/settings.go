package initoverlay

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ovpkg/ovpkg/config"
)

// Upper modes.
const (
	UpperCard  = "card"  // the card image: what ovpkg installed is in the root
	UpperTmpfs = "tmpfs" // RAM: every change is gone at the next boot
	UpperOff   = "off"   // no overlay: the plain root
)

// Fallback policies for a card that is missing, corrupt or refused.
const (
	FallbackTmpfs = "tmpfs" // boot with a RAM overlay instead (default)
	FallbackRO    = "ro"    // boot the plain root, read-only, no overlay
	FallbackStop  = "stop"  // say why on the console and halt
)

// What to do with a card whose filesystem was not cleanly unmounted
// (a power cut: ext2 has no journal).
const (
	UncleanCheck = "check" // e2fsck -p from the root first; without e2fsck, or if it fails: the fallback policy
	UncleanMount = "mount" // mount it unchecked (ovmount --force), for roots without e2fsck
)

// Config keys in /etc/ovpkg.conf (on the read-only root) and the kernel
// command-line parameters that override them for one boot.
var keys = []struct{ conf, cmdline string }{
	{"BOOT_UPPER", "ovpkg.upper"},
	{"BOOT_INIT", "ovpkg.init"},
	{"BOOT_SIZE", "ovpkg.size"},
	{"BOOT_FALLBACK", "ovpkg.fallback"},
	{"BOOT_CARD_DEV", "ovpkg.carddev"},
	{"BOOT_CARD_WAIT", "ovpkg.cardwait"},
	{"BOOT_MODULES", "ovpkg.modules"},
	{"BOOT_UNCLEAN", "ovpkg.unclean"},
}

// DefaultInits are tried in order when no init is named or the named one
// cannot be executed (the kernel's own list).
var DefaultInits = []string{"/sbin/init", "/etc/init", "/bin/init", "/bin/sh"}

// Settings are init-overlay's effective settings.
type Settings struct {
	Upper    string        // UpperCard, UpperTmpfs, UpperOff
	Init     string        // the real init ("" = DefaultInits)
	Size     string        // tmpfs size= option of the RAM upper
	Fallback string        // FallbackTmpfs, FallbackRO, FallbackStop
	CardDev  string        // device of the filesystem holding SD_ROOTFS ("" = from /etc/fstab)
	CardWait time.Duration // how long to wait for that device to appear
	Modules  []string      // extra modules to load first (e.g. the card reader's driver)
	Unclean  string        // a card not cleanly unmounted: UncleanCheck or UncleanMount

	// From says where each setting came from ("cmdline", "config",
	// "default"), by config key.
	From map[string]string
	// Warnings are settings that were ignored, and why.
	Warnings []string
}

// Defaults.
const (
	DefaultSize     = "25%"
	DefaultCardWait = 5 * time.Second
	maxCardWait     = 300 * time.Second
)

// ParseCmdline splits a kernel command line into words as the kernel
// does (double quotes group spaces) and returns the ovpkg.* parameters.
func ParseCmdline(s string) map[string]string {
	out := map[string]string{}
	for _, w := range splitCmdline(s) {
		k, v, ok := strings.Cut(w, "=")
		if strings.HasPrefix(k, "ovpkg.") {
			if !ok {
				v = "1"
			}
			out[k] = v
		}
	}
	return out
}

func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inq, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inq = !inq
			have = true
		case (r == ' ' || r == '\t' || r == '\n') && !inq:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// Resolve computes the settings from the config (may be nil) and the
// kernel command line's ovpkg.* parameters; a parameter wins over the
// config. Bad values are reported in Warnings and replaced by defaults:
// PID 1 never refuses to boot over a typo.
func Resolve(cfg *config.File, cmdline map[string]string) *Settings {
	s := &Settings{From: map[string]string{}}
	get := func(i int) (string, string) {
		k := keys[i]
		if v, ok := cmdline[k.cmdline]; ok {
			return strings.TrimSpace(v), "cmdline " + k.cmdline
		}
		if cfg != nil {
			if v, ok := cfg.Get(k.conf); ok && strings.TrimSpace(v) != "" {
				return strings.TrimSpace(v), "config " + k.conf
			}
		}
		return "", "default"
	}
	known := map[string]bool{}
	for _, k := range keys {
		known[k.cmdline] = true
	}
	for k := range cmdline {
		if !known[k] {
			s.Warnings = append(s.Warnings, fmt.Sprintf("unknown kernel parameter %s ignored (known: ovpkg.upper, ovpkg.init, ovpkg.size, ovpkg.fallback, ovpkg.carddev, ovpkg.cardwait, ovpkg.modules, ovpkg.unclean)", k))
		}
	}
	warn := func(from, v, why string) {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s=%q ignored: %s", from, v, why))
	}

	// Upper: default card when the config names one, else tmpfs.
	v, from := get(0)
	switch v {
	case UpperCard, UpperTmpfs, UpperOff:
		s.Upper = v
	default:
		if v != "" {
			warn(from, v, "want card, tmpfs or off")
			from = "default"
		}
		s.Upper = UpperTmpfs
		if cfg != nil {
			if img, ok := cfg.Get(config.KeyImage); ok && strings.TrimSpace(img) != "" {
				s.Upper = UpperCard
			}
		}
	}
	s.From["BOOT_UPPER"] = from

	v, from = get(1)
	if v != "" && !filepath.IsAbs(v) {
		warn(from, v, "the init must be an absolute path")
		v, from = "", "default"
	}
	s.Init, s.From["BOOT_INIT"] = v, from

	v, from = get(2)
	if v != "" && !validSize(v) {
		warn(from, v, "want a tmpfs size such as 64m, 1g or 30%")
		v = ""
	}
	if v == "" {
		v, from = DefaultSize, "default"
	}
	s.Size, s.From["BOOT_SIZE"] = v, from

	v, from = get(3)
	switch v {
	case FallbackTmpfs, FallbackRO, FallbackStop:
	default:
		if v != "" {
			warn(from, v, "want tmpfs, ro or stop")
		}
		v, from = FallbackTmpfs, "default"
	}
	s.Fallback, s.From["BOOT_FALLBACK"] = v, from

	v, from = get(4)
	s.CardDev, s.From["BOOT_CARD_DEV"] = v, from

	v, from = get(5)
	s.CardWait = DefaultCardWait
	if v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 || n > maxCardWait.Seconds() {
			warn(from, v, fmt.Sprintf("want seconds, 0..%d", int(maxCardWait.Seconds())))
			from = "default"
		} else {
			s.CardWait = time.Duration(n * float64(time.Second))
		}
	} else {
		from = "default"
	}
	s.From["BOOT_CARD_WAIT"] = from

	v, from = get(6)
	for _, m := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		if strings.ContainsAny(m, "/") || strings.HasPrefix(m, ".") {
			warn(from, m, "not a module name")
			continue
		}
		s.Modules = append(s.Modules, m)
	}
	s.From["BOOT_MODULES"] = from

	v, from = get(7)
	switch v {
	case UncleanCheck, UncleanMount:
	default:
		if v != "" {
			warn(from, v, "want check or mount")
		}
		v, from = UncleanCheck, "default"
	}
	s.Unclean, s.From["BOOT_UNCLEAN"] = v, from
	return s
}

// validSize accepts tmpfs's size= forms: a number with an optional k, m,
// g (or K, M, G) suffix, or a percentage of RAM (1..100%).
func validSize(v string) bool {
	if p, ok := strings.CutSuffix(v, "%"); ok {
		n, err := strconv.Atoi(p)
		return err == nil && n >= 1 && n <= 100
	}
	num := strings.TrimRight(v, "kmgKMG")
	if len(v)-len(num) > 1 {
		return false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	return err == nil && n > 0
}
