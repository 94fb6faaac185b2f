package busy

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Process is one holding process and what it holds, summarised for a
// refusal: one line per process instead of one per mapped file.
type Process struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
	Uses    []Use  `json:"uses"`
}

// Use is one kind of hold: "cwd", "root", "exe", "open file" or
// "mapping", how many, and the path (Count 1) or the directory they all
// lie under.
type Use struct {
	What  string `json:"what"`
	Count int    `json:"count"`
	Path  string `json:"path"`
	FDs   []int  `json:"fds,omitempty"` // for open files
}

// Summarize groups holders by process (in the order of hs, which Scan
// sorts by PID) and, within a process, by kind of use.
func Summarize(hs []Holder) []Process {
	var out []Process
	index := map[int]int{}
	paths := map[[2]int][]string{} // (process index, use index) -> paths
	for _, h := range hs {
		i, ok := index[h.PID]
		if !ok {
			i = len(out)
			index[h.PID] = i
			out = append(out, Process{PID: h.PID, Command: h.Command})
		}
		what, fd := kind(h.Use)
		p := &out[i]
		j := -1
		for k := range p.Uses {
			if p.Uses[k].What == what {
				j = k
			}
		}
		if j < 0 {
			j = len(p.Uses)
			p.Uses = append(p.Uses, Use{What: what})
		}
		u := &p.Uses[j]
		u.Count++
		if fd >= 0 {
			u.FDs = append(u.FDs, fd)
		}
		paths[[2]int{i, j}] = append(paths[[2]int{i, j}], h.Path)
	}
	for k, ps := range paths {
		u := &out[k[0]].Uses[k[1]]
		if len(ps) == 1 {
			u.Path = ps[0]
		} else {
			u.Path = commonDir(ps)
		}
	}
	return out
}

// kind maps a Holder's Use to a Use.What (and the fd number).
func kind(use string) (string, int) {
	if n, ok := strings.CutPrefix(use, "fd "); ok {
		fd, err := strconv.Atoi(n)
		if err != nil {
			fd = -1
		}
		return "open file", fd
	}
	if use == "mmap" {
		return "mapping", -1
	}
	return use, -1
}

// commonDir is the deepest directory all of ps lie under.
func commonDir(ps []string) string {
	dir := path.Dir(ps[0])
	for _, p := range ps[1:] {
		for dir != "/" && dir != "." && p != dir && !strings.HasPrefix(p, dir+"/") {
			dir = path.Dir(dir)
		}
	}
	return dir
}

// String is the process's line: "PID 1234 (sleep): cwd /usr/local, fd 3
// /usr/bin/a, 16 mappings under /usr/lib".
func (p Process) String() string {
	var parts []string
	for _, u := range p.Uses {
		parts = append(parts, u.String())
	}
	return fmt.Sprintf("PID %d (%s): %s", p.PID, p.Command, strings.Join(parts, ", "))
}

func (u Use) String() string {
	if u.Count == 1 {
		switch {
		case u.What == "open file" && len(u.FDs) == 1:
			return fmt.Sprintf("fd %d %s", u.FDs[0], u.Path)
		case u.Path == "":
			return u.What
		}
		return u.What + " " + u.Path
	}
	return fmt.Sprintf("%d %ss under %s", u.Count, u.What, u.Path)
}

// Lines is the one line per process of Summarize(hs).
func Lines(hs []Holder) []string {
	var out []string
	for _, p := range Summarize(hs) {
		out = append(out, p.String())
	}
	return out
}
