package subhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/atomicfile"
)

// States a subhost's record can be in.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
	StateStopped  = "stopped"
	StateFailed   = "failed"  // start failed; nothing of it is left
	StateCrashed  = "crashed" // computed: the supervisor died without cleaning up
)

// CableState is one cable as it was made.
type CableState struct {
	Host   string   `json:"host"`
	Sub    string   `json:"subhost"`
	Bridge string   `json:"bridge,omitempty"`
	MAC    string   `json:"mac,omitempty"`
	Vlans  []string `json:"vlans,omitempty"` // host-side VLAN interfaces
}

// State is RUN_DIR/subhosts/NAME.json: what the supervisor made, so that
// stop (or the next start) removes exactly that, even after a crash.
type State struct {
	Version    int          `json:"version"`
	Name       string       `json:"name"`
	Config     string       `json:"config"`
	State      string       `json:"state"`
	Supervisor int          `json:"supervisor_pid"`
	Init       int          `json:"init_pid,omitempty"` // the subhost's PID 1, as the host sees it
	NetNS      string       `json:"netns,omitempty"`
	Cgroup     string       `json:"cgroup,omitempty"`
	Cables     []CableState `json:"cables,omitempty"`
	Lower      string       `json:"lower"`
	Upper      string       `json:"upper"`
	Work       string       `json:"work"`
	Live       string       `json:"live"`
	Log        string       `json:"log"`
	Card       bool         `json:"card,omitempty"`
	BaseView   string       `json:"base_view,omitempty"` // scratch mount point for the card's base (in the subhost's namespace only)
	Started    time.Time    `json:"started"`
	Ready      time.Time    `json:"ready,omitzero"`
	Ended      time.Time    `json:"ended,omitzero"`
	Reason     string       `json:"reason,omitempty"` // why it ended
}

const stateVersion = 1

// Dir is the directory of subhost records under RUN_DIR.
func Dir(runDir string) string { return filepath.Join(runDir, "subhosts") }

func statePath(runDir, name string) string { return filepath.Join(Dir(runDir), name+".json") }
func lockPath(runDir, name string) string  { return filepath.Join(Dir(runDir), name+".lock") }

// ReadState reads NAME's record (fs.ErrNotExist when there is none).
func ReadState(runDir, name string) (*State, error) {
	b, err := os.ReadFile(statePath(runDir, name))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("subhost record %s is damaged: %w", statePath(runDir, name), err)
	}
	if s.Name != name {
		return nil, fmt.Errorf("subhost record %s names %q", statePath(runDir, name), s.Name)
	}
	return &s, nil
}

func writeState(runDir string, s *State) error {
	s.Version = stateVersion
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(statePath(runDir, s.Name), append(b, '\n'), 0o644)
}

// Names lists the subhosts that have a record, sorted.
func Names(runDir string) ([]string, error) {
	ents, err := os.ReadDir(Dir(runDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && checkName(n) == nil {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// lock is the flock on RUN_DIR/subhosts/NAME.lock. The supervisor holds
// it for the subhost's whole life, so "locked" means "a supervisor is
// alive", without trusting PIDs that may have been reused.
type lock struct{ f *os.File }

// ErrRunning is returned when a supervisor holds the subhost's lock.
var ErrRunning = errors.New("is running")

func tryLock(runDir, name string) (*lock, error) {
	if err := os.MkdirAll(Dir(runDir), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockPath(runDir, name), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("subhost %s %w", name, ErrRunning)
		}
		return nil, err
	}
	return &lock{f}, nil
}

func (l *lock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// alive reports whether a supervisor holds NAME's lock.
func alive(runDir, name string) bool {
	l, err := tryLock(runDir, name)
	if err != nil {
		return errors.Is(err, ErrRunning)
	}
	l.release()
	return false
}
