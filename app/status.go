package app

import (
	"fmt"
	"github.com/ovpkg/ovpkg/internal/units"
	"strings"

	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/config"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/mountset"
	"github.com/ovpkg/ovpkg/pkgflow"
	"github.com/ovpkg/ovpkg/pkgmgr"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the card: image, UUID, space, mounts, packages, base drift",
		UsageText: "ovpkg status [--json]",
		Flags:     pkgFlags(jsonFlag),
		Action:    statusAction,
	}
}

type statusMount struct {
	Target string `json:"target"`
	Upper  string `json:"upper"`
}

type statusReport struct {
	Config         string        `json:"config"`
	Image          string        `json:"image"`
	UUID           string        `json:"uuid"`
	Mounted        bool          `json:"mounted"`
	State          string        `json:"state,omitempty"`
	Loop           string        `json:"loop,omitempty"`
	CardMount      string        `json:"card_mount,omitempty"`
	SizeBytes      int64         `json:"size_bytes,omitempty"`
	UsedBytes      int64         `json:"used_bytes,omitempty"`
	FreeBytes      int64         `json:"free_bytes,omitempty"`
	Mounts         []statusMount `json:"mounts,omitempty"`
	PackageManager string        `json:"package_manager"`
	CardPackages   int           `json:"card_packages"`
	BasePackages   int           `json:"base_packages"`
	Broken         []string      `json:"broken,omitempty"`
	BaseChanged    *bool         `json:"base_changed,omitempty"` // nil: unknown (ovpkg never wrote this card)
	Drift          []string      `json:"drift,omitempty"`
	// Lingering are old overlays a restack detached while processes held
	// them; they keep the card busy (eject refuses) until those exit.
	Lingering []mountset.Lingering `json:"lingering,omitempty"`
	// CardTrust says whether setuid, setgid and file capabilities work on
	// the card's overlays, and why not (docs/trust.md).
	CardTrust *mountset.CardTrust `json:"card_trust,omitempty"`
}

func statusAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("status takes no arguments")
	}
	e, err := openPkgEnv(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	defer e.Close()
	r := statusReport{Config: config.Resolve(c.String("config")), PackageManager: e.M.Name()}
	if cfg, err := config.Load(r.Config); err == nil {
		r.Image, _ = cfg.Get(config.KeyImage)
		r.UUID, _ = cfg.Get(config.KeyUUID)
	}
	d, err := e.ReadDBs()
	if err != nil {
		return err
	}
	if e.Rec != nil {
		r.Mounted, r.State, r.Loop, r.CardMount = true, e.Rec.State, e.Rec.Loop, e.Rec.CardMount
		r.Image, r.UUID = e.Rec.Image, e.Rec.UUID
		r.CardTrust = e.Rec.CardTrust
		if sp, err := pkgmgr.StatSpace(e.Rec.CardMount); err == nil {
			r.SizeBytes, r.FreeBytes, r.UsedBytes = sp.Total, sp.Avail, sp.Total-sp.Free
		}
		for _, o := range e.Rec.Overlays {
			r.Mounts = append(r.Mounts, statusMount{Target: o.Target, Upper: o.Upper})
		}
		if tab, err := mount.Self(); err == nil {
			r.Lingering, _, _ = mountset.CheckDetached("", tab, e.Rec)
		}
		for _, x := range pkgmgr.Classify(d.Merged, d.Base, d.CardHasCopy, d.Snapshot) {
			switch x.Where {
			case pkgmgr.OnCard, pkgmgr.CardUpgrade:
				r.CardPackages++
			case pkgmgr.BaseChanged:
				r.Drift = append(r.Drift, x.Key())
			}
		}
		r.BaseChanged = d.BaseChanged()
	}
	for _, p := range d.Base {
		if p.Installed() {
			r.BasePackages++
		}
	}
	r.Broken = pkgflow.Broken(d.Merged)
	if c.Bool("json") {
		return printJSON(c.App.Writer, r)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "config:     %s\nimage:      %s\nuuid:       %s\n", r.Config, r.Image, r.UUID)
	if !r.Mounted {
		fmt.Fprintf(w, "mounted:    no (run ovmount)\n")
	} else {
		fmt.Fprintf(w, "mounted:    %s on %s (%s)\n", r.Loop, r.CardMount, r.State)
		fmt.Fprintf(w, "space:      %s used, %s free of %s\n", units.Bytes(r.UsedBytes), units.Bytes(r.FreeBytes), units.Bytes(r.SizeBytes))
		for _, m := range r.Mounts {
			fmt.Fprintf(w, "overlay:    %s (upper %s)\n", m.Target, m.Upper)
		}
		for _, l := range r.Lingering {
			fmt.Fprintf(w, "lingering:  %s (eject waits for it)\n", l)
		}
		if t := r.CardTrust; t != nil && t.Setuid {
			fmt.Fprintf(w, "trust:      %s: setuid, setgid and file capabilities work\n", t.State)
		} else if t != nil {
			fmt.Fprintf(w, "trust:      %s: setuid, setgid and file capabilities are OFF (%s; approve with: ovmount --trust)\n", t.State, t.Why)
		}
	}
	fmt.Fprintf(w, "packages:   %d on the card, %d in the base (%s)\n", r.CardPackages, r.BasePackages, r.PackageManager)
	switch {
	case r.BaseChanged == nil && r.Mounted:
		fmt.Fprintf(w, "base:       unknown whether it changed (ovpkg has not written this card yet)\n")
	case r.BaseChanged != nil && *r.BaseChanged:
		fmt.Fprintf(w, "base:       CHANGED since ovpkg last wrote the card%s\n", listSuffix(r.Drift))
	case r.BaseChanged != nil:
		fmt.Fprintf(w, "base:       unchanged since ovpkg last wrote the card\n")
	}
	if len(r.Broken) > 0 {
		fmt.Fprintf(w, "half-done:  %s (run `%s`)\n", strings.Join(r.Broken, ", "), e.M.RecoverHint())
	}
	return nil
}

func listSuffix(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return ": " + strings.Join(s, ", ")
}
