package pkgmgr

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ovpkg/ovpkg/card"
)

// OpkgConfPath is opkg's configuration; OpkgConfDir holds more *.conf
// files that opkg reads after it (OpenWrt: distfeeds.conf,
// customfeeds.conf).
const (
	OpkgConfPath = "etc/opkg.conf"
	OpkgConfDir  = "etc/opkg"
)

// opkgDefaultListsDir is opkg-lede's lists_dir when the configuration
// names none (OpenWrt's names /var/opkg-lists).
const opkgDefaultListsDir = "/usr/lib/opkg/lists"

// OpkgDest is a `dest NAME DIR` line.
type OpkgDest struct {
	Name, Dir string
	File      string // the configuration file it is in
	Line      int
}

// OpkgConf is what ovpkg needs from opkg's configuration.
type OpkgConf struct {
	Files       []string // read, in opkg's order
	Dests       []OpkgDest
	ListsDir    string // lists_dir (absolute in the root)
	OverlayRoot string // option overlay_root
}

// ReadOpkgConf reads root's /etc/opkg.conf and /etc/opkg/*.conf as
// opkg-lede does (same line syntax, quotes optional); missing files are
// empty.
func ReadOpkgConf(root string) (*OpkgConf, error) {
	c := &OpkgConf{}
	files := []string{"/" + OpkgConfPath}
	more, _ := filepath.Glob(filepath.Join(root, OpkgConfDir, "*.conf"))
	sort.Strings(more)
	for _, m := range more {
		files = append(files, "/"+strings.TrimPrefix(strings.TrimPrefix(m, root), "/"))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("opkg configuration: %w", err)
		}
		c.Files = append(c.Files, f)
		for i, l := range strings.Split(string(b), "\n") {
			fl := opkgConfFields(l)
			if len(fl) < 2 {
				continue
			}
			switch fl[0] {
			case "dest":
				if len(fl) >= 3 {
					c.Dests = append(c.Dests, OpkgDest{Name: fl[1], Dir: fl[2], File: f, Line: i + 1})
				}
			case "lists_dir":
				if len(fl) >= 3 {
					c.ListsDir = fl[2]
				}
			case "option":
				if fl[1] == "overlay_root" && len(fl) >= 3 {
					c.OverlayRoot = fl[2]
				}
			}
		}
	}
	if c.ListsDir == "" {
		c.ListsDir = opkgDefaultListsDir
	}
	return c, nil
}

// opkgConfFields splits a configuration line into its words (type, name,
// value), dropping comments and quotes.
func opkgConfFields(l string) []string {
	l = strings.TrimSpace(l)
	if l == "" || strings.HasPrefix(l, "#") {
		return nil
	}
	f := strings.Fields(l)
	for i := range f {
		f[i] = strings.Trim(f[i], `"'`)
	}
	return f
}

// CardDests are the destinations that point at an ovpkg card (a directory
// at or below one holding the card layout, <dir>/ovpkg/FORMAT): the seed's
// `dest card /overlay` line. ovpkg installs through the overlays with
// opkg's root destination, so such a destination is never used; it is
// left out of the configuration ovpkg gives opkg (see OpkgArgv0).
func (c *OpkgConf) CardDests(root string) []OpkgDest {
	var out []OpkgDest
	for _, d := range c.Dests {
		dir := filepath.Clean("/" + d.Dir)
		if dir == "/" {
			continue
		}
		for p := dir; p != "/"; p = filepath.Dir(p) {
			if exists(filepath.Join(root, p, card.TopDir, "FORMAT")) {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// OpkgRunConfDir is where ovpkg writes the configuration it gives opkg
// when /etc/opkg.conf names a card destination (relative to the root: on
// OpenWrt /tmp is RAM; never on the card or in the base).
const OpkgRunConfDir = "tmp/ovpkg-opkg"

// opkgPrefix is the start of every opkg command line ovpkg runs: plain
// "opkg" unless the configuration has card destinations; then opkg reads
// a copy of the configuration without them (`-f`, and OPKG_CONF_DIR for
// /etc/opkg/*.conf), written under OpkgRunConfDir. note says so.
func (o *Opkg) opkgPrefix() (argv []string, note string, err error) {
	c, err := ReadOpkgConf(o.root)
	if err != nil {
		return nil, "", err
	}
	cd := c.CardDests(o.root)
	if len(cd) == 0 {
		return []string{"opkg"}, "", nil
	}
	drop := map[string]map[int]bool{}
	var lines []string
	inDir := false
	for _, d := range cd {
		inDir = inDir || d.File != "/"+OpkgConfPath
		if drop[d.File] == nil {
			drop[d.File] = map[int]bool{}
		}
		drop[d.File][d.Line] = true
		lines = append(lines, fmt.Sprintf("`dest %s %s` (%s:%d)", d.Name, d.Dir, d.File, d.Line))
	}
	dir := filepath.Join(o.root, OpkgRunConfDir)
	os.RemoveAll(filepath.Join(dir, "conf.d")) // ours: regular files in RAM, never a mount point
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o700); err != nil {
		return nil, "", fmt.Errorf("opkg configuration without the card destination: %w", err)
	}
	for _, f := range c.Files {
		b, err := os.ReadFile(filepath.Join(o.root, f))
		if err != nil {
			return nil, "", err
		}
		ls := strings.Split(string(b), "\n")
		for i := range ls {
			if drop[f][i+1] {
				ls[i] = "# left out by ovpkg (the card is reached through the overlays): " + ls[i]
			}
		}
		dst := filepath.Join(dir, "opkg.conf")
		if f != "/"+OpkgConfPath {
			dst = filepath.Join(dir, "conf.d", filepath.Base(f))
		}
		if err := os.WriteFile(dst, []byte(strings.Join(ls, "\n")), 0o600); err != nil {
			return nil, "", err
		}
	}
	if !exists(filepath.Join(dir, "opkg.conf")) {
		if err := os.WriteFile(filepath.Join(dir, "opkg.conf"), nil, 0o600); err != nil {
			return nil, "", err
		}
	}
	rel := "/" + OpkgRunConfDir
	note = fmt.Sprintf("opkg's configuration names the card as a destination: %s; ovpkg installs through the overlays (opkg's root destination) and leaves that line out when it runs opkg; remove it, or plain opkg keeps writing a status file there (see docs/pkgmgr.md)",
		strings.Join(lines, ", "))
	if !inDir { // opkg reads /etc/opkg/*.conf itself: none names the card
		return []string{"opkg", "-f", rel + "/opkg.conf"}, note, nil
	}
	return []string{"env", "OPKG_CONF_DIR=" + rel + "/conf.d", "opkg", "-f", rel + "/opkg.conf"}, note, nil
}

// opkgFeedInfo is what a package list says about one package.
type opkgFeedInfo struct {
	Version, Arch       string
	InstalledSize, Size int64
}

// readOpkgLists scans the package lists in listsDir (gzip'd, as
// opkg-lede keeps them, or plain) for the wanted packages, one stanza at
// a time: a feed's list is megabytes and is never held whole.
func readOpkgLists(listsDir string, wanted map[string]bool) map[string][]opkgFeedInfo {
	out := map[string][]opkgFeedInfo{}
	ents, err := os.ReadDir(listsDir)
	if err != nil {
		return out
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".sig") {
			continue
		}
		f, err := os.Open(filepath.Join(listsDir, e.Name()))
		if err != nil {
			continue
		}
		scanOpkgList(f, wanted, out)
		f.Close()
	}
	return out
}

func scanOpkgList(r io.Reader, wanted map[string]bool, out map[string][]opkgFeedInfo) {
	br := bufio.NewReaderSize(r, 32<<10)
	if m, err := br.Peek(2); err == nil && bytes.Equal(m, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return
		}
		br = bufio.NewReaderSize(zr, 32<<10)
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var name string
	var cur opkgFeedInfo
	flush := func() {
		if name != "" && wanted[name] {
			out[name] = append(out[name], cur)
		}
		name, cur = "", opkgFeedInfo{}
	}
	for sc.Scan() {
		l := sc.Text()
		if l == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.HasPrefix(l, " ") {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			name = v
		case "Version":
			cur.Version = v
		case "Architecture":
			cur.Arch = v
		case "Installed-Size":
			cur.InstalledSize, _ = strconv.ParseInt(v, 10, 64)
		case "Size":
			cur.Size, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	flush()
}
