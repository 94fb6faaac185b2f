package initoverlay

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/internal/atomicfile"
)

// StateName is the boot-state file in RUN_DIR (/run/ovpkg/boot-state).
const StateName = "boot-state"

// Boot outcomes (STATE=).
const (
	StateOK       = "ok"       // the requested upper is in place
	StateFallback = "fallback" // the card could not be used; the policy decided
	StateDisabled = "disabled" // /overlay/disable on the root
	StateOff      = "off"      // BOOT_UPPER / ovpkg.upper=off
	StateFailed   = "failed"   // no overlay could be built; the plain root runs
)

// State is what init-overlay did at this boot, written as shell-style
// KEY=VALUE lines (sourceable, and read by `ovpkg boot status`).
type State struct {
	Values map[string]string
}

// Keys in the order they are written.
var stateOrder = []string{"STATE", "UPPER", "REQUESTED", "FALLBACK", "REASON", "INIT", "BASE", "RWDATA",
	"CARD_IMAGE", "CARD_DEVICE", "CARD_MOUNT", "CARD_LAYERS", "CARD_SETUP",
	"TRIAL", "TRIAL_LAYERS", "TRIAL_BOOT", "TRIAL_DROPPED",
	"MODULES", "T_START_MS", "T_EXEC_MS", "PHASES_MS", "WARNINGS"}

// Set sets a key (empty values are left out when writing).
func (s *State) Set(k, v string) {
	if s.Values == nil {
		s.Values = map[string]string{}
	}
	s.Values[k] = v
}

// Get returns a key's value.
func (s *State) Get(k string) string { return s.Values[k] }

// Bytes renders the state.
func (s *State) Bytes() []byte {
	f, _ := config.Parse("", strings.NewReader("# init-overlay: what this boot did (see ovpkg boot status)\n"))
	done := map[string]bool{}
	for _, k := range stateOrder {
		if v := s.Values[k]; v != "" {
			f.Set(k, oneLine(v))
		}
		done[k] = true
	}
	var rest []string
	for k := range s.Values {
		if !done[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		if v := s.Values[k]; v != "" {
			f.Set(k, oneLine(v))
		}
	}
	return f.Bytes()
}

func oneLine(v string) string { return strings.ReplaceAll(strings.TrimSpace(v), "\n", "; ") }

// Write replaces RUN_DIR/boot-state.
func (s *State) Write(runDir string) error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(runDir, StateName), s.Bytes(), 0o644)
}

// ReadState reads RUN_DIR/boot-state; fs.ErrNotExist when this boot did
// not go through init-overlay.
func ReadState(runDir string) (*State, error) {
	f, err := config.Load(filepath.Join(runDir, StateName))
	if err != nil {
		return nil, err
	}
	s := &State{Values: map[string]string{}}
	for _, k := range f.Keys() {
		v, _ := f.Get(k)
		s.Values[k] = v
	}
	return s, nil
}

// Card setup marker: <card>/ovpkg/boot holds "PENDING <n> <time>" while
// init-overlay prepares the card for a boot (recovery, try-boot
// bookkeeping, a layout on a fresh card) and "READY <time>" once its
// overlays are up. Finding PENDING means a boot died in the middle of
// that: the card is recovered again before use, and after
// maxPendingBoots such boots in a row it is not used at all (a card that
// crashes every boot must not lock the device in a boot loop).

const markerName = "boot"

const maxPendingBoots = 2

// ErrSetupFailed says the card's setup did not finish at several boots in
// a row.
var ErrSetupFailed = errors.New("the card's boot setup did not finish")

func markerPath(l *card.Layout) string { return filepath.Join(l.Top(), markerName) }

// readMarker returns the PENDING count (0 when READY or absent).
func readMarker(l *card.Layout) (pending int, since string) {
	b, err := os.ReadFile(markerPath(l))
	if err != nil || len(b) > 4096 {
		return 0, ""
	}
	f := strings.Fields(string(b))
	if len(f) >= 2 && f[0] == "PENDING" {
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 1 {
			n = 1
		}
		if len(f) >= 3 {
			since = f[2]
		}
		return n, since
	}
	return 0, ""
}

// MarkPending records that a boot starts preparing the card; it returns
// the number of earlier boots that never got the card READY.
func MarkPending(l *card.Layout, now time.Time) (int, error) {
	n, since := readMarker(l)
	if since == "" {
		since = now.UTC().Format(time.RFC3339)
	}
	if n >= maxPendingBoots {
		return n, fmt.Errorf("%w at the last %d boots (pending since %s); it is left alone (after ovmount, `ovpkg boot ok` clears this)", ErrSetupFailed, n, since)
	}
	return n, atomicfile.Write(markerPath(l), fmt.Appendf(nil, "PENDING %d %s\n", n+1, since), 0o644)
}

// MarkReady records that the card's overlays are up.
func MarkReady(l *card.Layout, now time.Time) error {
	return atomicfile.Write(markerPath(l), fmt.Appendf(nil, "READY %s\n", now.UTC().Format(time.RFC3339)), 0o644)
}

// ClearPending resets a PENDING marker (ovpkg boot ok); false when there
// was none.
func ClearPending(l *card.Layout) (bool, error) {
	b, err := os.ReadFile(markerPath(l))
	if errors.Is(err, fs.ErrNotExist) || err == nil && !bytes.HasPrefix(b, []byte("PENDING")) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, MarkReady(l, time.Now())
}
