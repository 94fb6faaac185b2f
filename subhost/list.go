package subhost

import (
	"errors"
	"io/fs"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Info is one subhost as `list` shows it.
type Info struct {
	Name       string       `json:"name"`
	State      string       `json:"state"`
	PID        int          `json:"pid,omitempty"` // PID 1 of the subhost, as the host sees it
	Supervisor int          `json:"supervisor_pid,omitempty"`
	Uptime     float64      `json:"uptime_seconds,omitempty"`
	Started    time.Time    `json:"started"`
	Ended      time.Time    `json:"ended,omitzero"`
	Reason     string       `json:"reason,omitempty"`
	Config     string       `json:"config"`
	Upper      string       `json:"upper"`
	UpperBytes int64        `json:"upper_bytes"`
	Card       bool         `json:"card,omitempty"`
	Cables     []CableState `json:"cables"`
	Log        string       `json:"log"`
}

// displayState is the state to show: the record's, except that a record
// saying it is up whose supervisor is gone is "crashed".
func displayState(runDir string, st *State) string {
	if needsCleanup(st) && !alive(runDir, st.Name) {
		return StateCrashed
	}
	return st.State
}

// List returns every subhost with a record.
func List(runDir string) ([]Info, error) {
	names, err := Names(runDir)
	if err != nil {
		return nil, err
	}
	out := []Info{}
	for _, n := range names {
		st, err := ReadState(runDir, n)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		in := Info{Name: n, State: displayState(runDir, st), Supervisor: st.Supervisor, Started: st.Started, Ended: st.Ended,
			Reason: st.Reason, Config: st.Config, Upper: st.Upper, Card: st.Card, Cables: st.Cables, Log: st.Log}
		if in.Cables == nil {
			in.Cables = []CableState{}
		}
		if in.State == StateRunning || in.State == StateStopping {
			in.PID = st.Init
			since := st.Ready
			if since.IsZero() {
				since = st.Started
			}
			in.Uptime = time.Since(since).Round(time.Second).Seconds()
		} else {
			in.Supervisor = 0
		}
		in.UpperBytes = diskUsage(st.Upper)
		out = append(out, in)
	}
	return out, nil
}

// diskUsage adds up the blocks used under dir (not crossing into other
// filesystems), as du does.
func diskUsage(dir string) int64 {
	var root unix.Stat_t
	if dir == "" || unix.Lstat(dir, &root) != nil {
		return 0
	}
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if st.Dev != root.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		n += int64(st.Blocks) * 512
		return nil
	})
	return n
}

func statDev(p string) uint64 {
	var st unix.Stat_t
	if unix.Lstat(p, &st) != nil {
		return 0
	}
	return uint64(st.Dev)
}
