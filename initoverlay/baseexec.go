package initoverlay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/layer"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/pkgmgr"
)

// Upper is a tree that lies over the base (root-relative paths inside):
// a card layer or the RAM upper.
type Upper struct {
	Name string // "card layer 0003", "RAM upper"
	Tree string
}

// Shadow is an entry of an upper that hides the base's entry at Path.
type Shadow struct {
	Path string `json:"path"` // "/etc/foo.conf"
	By   string `json:"by"`   // which upper
	Kind string `json:"kind"` // "file" (also links and the like), "deleted" (whiteout), "opaque directory"
}

// BaseExecOptions say what ovpkg base exec runs where.
type BaseExecOptions struct {
	Base   string   // the read-only base (/overlay/robase)
	Uppers []Upper  // topmost first
	Argv   []string // the command, run chrooted in Base
	RunDir string   // for the policy-rc.d log
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// BaseExecResult is what happened.
type BaseExecResult struct {
	Code        int      `json:"exit_code"`
	Hidden      []Shadow `json:"hidden"`      // base entries the command changed that an upper hides
	NotStarted  []string `json:"not_started"` // service actions policy-rc.d refused
	StillWrite  string   `json:"still_writable,omitempty"`
	ShadowCount int      `json:"shadows"`
}

// BaseExec runs argv chrooted in the base, made writable for the time:
// /proc /sys /dev /run bound in, a private tmpfs on /tmp, services not
// started (policy-rc.d), the command in a PID namespace of its own. Then
// the base is read-only again, and the result names every entry the
// command changed in the base that an upper (the card, the RAM upper)
// hides from the running system.
func BaseExec(ctx context.Context, o BaseExecOptions) (res *BaseExecResult, retErr error) {
	if len(o.Argv) == 0 {
		return nil, errors.New("base exec: no command")
	}
	tab, err := mount.Self()
	if err != nil {
		return nil, err
	}
	m := tab.Lookup(o.Base)
	if m == nil {
		return nil, fmt.Errorf("%s is not mounted: this system did not boot through init-overlay (its root is the base; run the command directly)", o.Base)
	}
	shadows, err := collectShadows(o.Uppers)
	if err != nil {
		return nil, err
	}
	before := snapshot(o.Base, shadows)
	res = &BaseExecResult{ShadowCount: len(shadows)}

	// Writable: the filesystem and this mount (a remount without
	// MS_BIND changes both).
	if err := mount.Mount("", o.Base, "", unix.MS_REMOUNT, ""); err != nil {
		return nil, fmt.Errorf("making the base writable: %w", err)
	}
	defer func() {
		if fd, err := unix.Open(o.Base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			unix.Syncfs(fd)
			unix.Close(fd)
		}
		if err := mount.Mount("", o.Base, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			res.StillWrite = fmt.Sprintf("the base %s stays writable: %v (a process started by the command still writes to it? see fuser -m %s)", o.Base, err, o.Base)
		}
	}()
	var binds []string
	defer func() {
		for i := len(binds) - 1; i >= 0; i-- {
			if err := mount.Unmount(binds[i], unix.MNT_DETACH); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("undo: %w", err))
			}
		}
	}()
	for _, d := range []string{"/proc", "/sys", "/dev", "/run"} {
		t := filepath.Join(o.Base, d)
		if st, err := os.Stat(t); err != nil || !st.IsDir() {
			continue
		}
		if err := mount.Mount(d, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return res, err
		}
		binds = append(binds, t)
	}
	if st, err := os.Stat(filepath.Join(o.Base, "tmp")); err == nil && st.IsDir() {
		t := filepath.Join(o.Base, "tmp")
		if err := mount.Mount("tmpfs", t, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return res, err
		}
		binds = append(binds, t)
	}
	r, err := pkgmgr.Run(ctx, o.Argv, pkgmgr.RunOptions{Root: o.Base, Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr,
		PolicyRC: true, PolicyLog: filepath.Join(o.RunDir, "base-exec.policy")})
	if err != nil {
		return res, err
	}
	res.Code = r.Code
	res.NotStarted = r.NotStarted
	after := snapshot(o.Base, shadows)
	for _, s := range shadows {
		if before[s.Path] != after[s.Path] {
			res.Hidden = append(res.Hidden, s)
		}
	}
	return res, nil
}

// collectShadows lists what the uppers hold (topmost wins): files and
// links, whiteouts, opaque directories. Directories that merge are not
// shadows.
func collectShadows(uppers []Upper) ([]Shadow, error) {
	seen := map[string]bool{}
	var out []Shadow
	for _, u := range uppers {
		err := filepath.WalkDir(u.Tree, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == u.Tree && errors.Is(err, fs.ErrNotExist) {
					return filepath.SkipDir
				}
				return err
			}
			if p == u.Tree {
				return nil
			}
			rel := "/" + filepath.ToSlash(p[len(u.Tree)+1:])
			if seen[rel] {
				return nil
			}
			kind := ""
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			switch {
			case layer.IsWhiteout(&st):
				kind = "deleted"
			case d.IsDir():
				v := make([]byte, 4)
				if n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", v); err == nil && n > 0 && v[0] == 'y' {
					kind = "opaque directory"
				}
			default:
				kind = "file"
			}
			if kind != "" {
				seen[rel] = true
				out = append(out, Shadow{Path: rel, By: u.Name, Kind: kind})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading %s (%s): %w", u.Tree, u.Name, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// snapshot records, for each shadowed path, what the base has there.
func snapshot(base string, shadows []Shadow) map[string]string {
	out := make(map[string]string, len(shadows))
	for _, s := range shadows {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(base, s.Path), &st); err != nil {
			out[s.Path] = "-"
			continue
		}
		out[s.Path] = fmt.Sprint(st.Mode, st.Size, st.Ino, st.Mtim.Nano(), st.Ctim.Nano())
	}
	return out
}
