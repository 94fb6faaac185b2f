package pkgflow

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ovpkg/ovpkg/overlay"
)

// Where a package's file lives, as `ovpkg files` says.
const (
	WhereCard    = "card"    // a file in a card layer, or a directory only the card has
	WhereBase    = "base"    // the base root's (a directory the card merely fills in counts as base)
	WhereMissing = "missing" // listed by the database, but not on the system
)

// Where classifies paths (absolute, as the system sees them): a file or
// link is on the card when a card layer holds it; a directory only when
// the base has no such directory (every card layer holds /usr, /usr/bin
// and the like: they are the base's).
func (e *Env) Where(paths []string) ([]string, error) {
	out := make([]string, len(paths))
	type dirAsk struct {
		i   int
		rel string
	}
	asks := map[*overlay.Mount][]dirAsk{}
	for i, p := range paths {
		full := filepath.Join(e.Root, p)
		fi, err := os.Lstat(full)
		if err != nil {
			out[i] = WhereMissing
			continue
		}
		out[i] = WhereBase
		o, rel := e.overlayOf(full)
		if o == nil || !inCardLayers(o, rel) {
			continue
		}
		if !fi.IsDir() {
			out[i] = WhereCard
			continue
		}
		asks[o] = append(asks[o], dirAsk{i, rel})
	}
	for o, as := range asks {
		rels := make([]string, len(as))
		for k, a := range as {
			rels[k] = a.rel
		}
		have, err := baseHas(o, rels)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			if !have[a.rel] {
				out[a.i] = WhereCard
			}
		}
	}
	return out, nil
}

func (e *Env) overlayOf(full string) (*overlay.Mount, string) {
	if e.Rec == nil {
		return nil, ""
	}
	for i := range e.Rec.Overlays {
		o := &e.Rec.Overlays[i]
		rel, err := filepath.Rel(o.Target, full)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return o, rel
		}
	}
	return nil, ""
}

// inCardLayers says whether rel exists in one of the card's layers of o
// (its upper and every lower but the last, the base directory).
func inCardLayers(o *overlay.Mount, rel string) bool {
	for _, l := range append([]string{o.Upper}, o.Lowers[:len(o.Lowers)-1]...) {
		if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
			return true
		}
	}
	return false
}

// baseHas says which of rels exist in o's base directory (its last
// lower). When that is the overlay's own mount point, a child in a
// private mount namespace looks below the overlay (ReadBaseMain).
func baseHas(o *overlay.Mount, rels []string) (map[string]bool, error) {
	lower := o.Lowers[len(o.Lowers)-1]
	have := map[string]bool{}
	if filepath.Clean(lower) != filepath.Clean(o.Target) {
		for _, r := range rels {
			if _, err := os.Lstat(filepath.Join(lower, r)); err == nil {
				have[r] = true
			}
		}
		return have, nil
	}
	cmd := exec.Command("/proc/self/exe", ReadBaseArg, existsFlag, o.Target)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	cmd.Stdin = strings.NewReader(strings.Join(rels, "\n") + "\n")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("looking below the overlay on %s: %v: %s", o.Target, err, strings.TrimSpace(se.String()))
	}
	for _, l := range strings.Split(so.String(), "\n") {
		if l != "" {
			have[l] = true
		}
	}
	return have, nil
}

// existsFlag makes ReadBaseMain read paths from its input and print
// those that exist below the overlay.
const existsFlag = "--exists"

func existing(target string, in io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(in)
	bw := bufio.NewWriter(w)
	for sc.Scan() {
		rel := sc.Text()
		if rel == "" || strings.HasPrefix(rel, "/") || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		if _, err := os.Lstat(filepath.Join(target, rel)); err == nil {
			fmt.Fprintln(bw, rel)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return bw.Flush()
}
