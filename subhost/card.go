package subhost

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ovpkg/ovpkg/mountset"
)

// CardFromRecord is the card's merged root as ovmount's record describes
// it: for each overlaid directory, the live upper (which takes changes
// made outside ovpkg too) over the lower layers. The base directory
// itself is added by Supervise (through a view of the root's own
// filesystem, since the live overlay covers it).
func CardFromRecord(rec *mountset.Record) (*Card, error) {
	c := &Card{Root: rec.Root}
	if c.Root == "" {
		c.Root = "/"
	}
	for _, m := range rec.Overlays {
		rel, err := filepath.Rel(c.Root, m.Target)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("card overlay on %s is not below the root %s", m.Target, c.Root)
		}
		d := CardDir{Dir: rel, Lowers: []string{m.Upper}}
		if n := len(m.Lowers); n > 1 {
			d.Lowers = append(d.Lowers, m.Lowers[:n-1]...)
		}
		c.Dirs = append(c.Dirs, d)
	}
	return c, nil
}
