package mountset

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRecord: a mount record that parses and validates names only clean
// absolute paths, and overlay uppers and works below the card mount
// (in this package's area; the record's parser is the host side's).
func FuzzRecord(f *testing.F) {
	good := `{"version":1,"config":"/etc/ovpkg.conf","image":"/a.img","loop":"/dev/loop1","card_mount":"/overlay","root":"/","dirs":["usr"],` +
		`"layers":["0001"],"top_layer":"0001","tree":"/overlay/ovpkg/layers/0001/tree",` +
		`"overlays":[{"Target":"/usr","Lowers":["/usr"],"Upper":"/overlay/ovpkg/layers/0001/tree/usr","Work":"/overlay/ovpkg/layers/0001/work/usr"}]}`
	for _, s := range []string{good, strings.Replace(good, "/overlay/ovpkg/layers/0001/tree/usr", "/home/u/x", 1), `{"version":1}`, `{`, `{"version":99}`} {
		f.Add([]byte(s))
	}
	r := goodRecord()
	r.Version = recordVersion
	if err := r.validate(); err != nil {
		f.Fatalf("seed record invalid: %v", err)
	}
	b, _ := json.Marshal(r)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if json.Unmarshal(b, &r) != nil || r.validate() != nil {
			return
		}
		for _, p := range []string{r.Image, r.CardMount, r.Root} {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				t.Fatalf("path %q accepted", p)
			}
		}
		for _, m := range r.Overlays {
			for _, p := range []string{m.Upper, m.Work} {
				if !strings.HasPrefix(p, r.CardMount+"/") && r.CardMount != "/" {
					t.Fatalf("overlay dir %q not below the card mount %q", p, r.CardMount)
				}
			}
		}
	})
}
