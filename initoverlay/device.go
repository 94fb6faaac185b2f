package initoverlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/image/ext2"
)

// FstabEntry is one line of /etc/fstab.
type FstabEntry struct {
	Spec, Dir, Type, Options string
}

// ParseFstab reads fstab text (comments and short lines skipped; \040
// escapes decoded).
func ParseFstab(text string) []FstabEntry {
	var out []FstabEntry
	dec := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\134`, `\`)
	for _, l := range strings.Split(text, "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		e := FstabEntry{Spec: dec.Replace(f[0]), Dir: filepath.Clean(dec.Replace(f[1])), Type: "auto", Options: "defaults"}
		if len(f) > 2 {
			e.Type = f[2]
		}
		if len(f) > 3 {
			e.Options = f[3]
		}
		out = append(out, e)
	}
	return out
}

// CardSource is where the filesystem holding the card image comes from.
type CardSource struct {
	Spec    string // /dev/..., UUID=..., LABEL=...
	Dir     string // where it is mounted in the running system
	Type    string // filesystem type ("auto": probe)
	Options string // fstab options
	From    string // "fstab" or "BOOT_CARD_DEV"
}

// FindCardSource decides which filesystem holds image (SD_ROOTFS): the
// /etc/fstab entry with the longest mount point above it (not the root
// itself, which is read-only at boot), with its device replaced by
// cardDev when that is set. Without an fstab entry, cardDev is mounted
// on the image's directory.
func FindCardSource(image string, fstab []FstabEntry, cardDev string) (*CardSource, error) {
	var best *FstabEntry
	for i, e := range fstab {
		if e.Dir == "/" || e.Dir == "none" || !strings.HasPrefix(image, e.Dir+"/") {
			continue
		}
		switch e.Type {
		case "swap", "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "none":
			continue
		}
		if best == nil || len(e.Dir) > len(best.Dir) {
			best = &fstab[i]
		}
	}
	switch {
	case best != nil && cardDev != "":
		return &CardSource{Spec: cardDev, Dir: best.Dir, Type: best.Type, Options: best.Options, From: "BOOT_CARD_DEV"}, nil
	case best != nil:
		return &CardSource{Spec: best.Spec, Dir: best.Dir, Type: best.Type, Options: best.Options, From: "fstab"}, nil
	case cardDev != "":
		return &CardSource{Spec: cardDev, Dir: filepath.Dir(image), Type: "auto", Options: "defaults", From: "BOOT_CARD_DEV"}, nil
	}
	return nil, fmt.Errorf("no /etc/fstab entry mounts a filesystem holding %s, and BOOT_CARD_DEV (ovpkg.carddev=) is not set: at boot the root is read-only, so the card image must lie on another filesystem (add its fstab line or set BOOT_CARD_DEV)", image)
}

// fsInfo is what probing a block device found.
type fsInfo struct{ Type, UUID, Label string }

// probe reads a block device's superblock: ext2/3/4 or FAT.
func probe(dev string) (*fsInfo, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 2048)
	n, _ := f.ReadAt(buf, 0)
	buf = buf[:n]
	if len(buf) >= 2048 {
		if sb, err := ext2.ParseSuperblock(buf[1024:2048]); err == nil {
			u := sb.UUID
			return &fsInfo{Type: sb.Type(), Label: sb.Label(), UUID: fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])}, nil
		}
	}
	if len(buf) >= 512 && buf[510] == 0x55 && buf[511] == 0xaa {
		serial, label := 0, 0
		switch {
		case string(buf[0x52:0x57]) == "FAT32":
			serial, label = 0x43, 0x47
		case string(buf[0x36:0x39]) == "FAT":
			serial, label = 0x27, 0x2b
		}
		if serial > 0 {
			s := binary.LittleEndian.Uint32(buf[serial:])
			return &fsInfo{Type: "vfat", UUID: fmt.Sprintf("%04X-%04X", s>>16, s&0xffff), Label: strings.TrimRight(string(buf[label:label+11]), " \x00")}, nil
		}
	}
	return nil, errors.New("no ext2/ext3/ext4 or FAT filesystem found")
}

// blockDevices lists /dev/<name> for every block device the kernel has
// (partitions first: a card's filesystem is usually on one).
func blockDevices(sysBlock string) []string {
	ents, _ := os.ReadDir(sysBlock)
	var parts, disks []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		if _, err := os.Stat(filepath.Join(sysBlock, n, "partition")); err == nil {
			parts = append(parts, "/dev/"+n)
		} else {
			disks = append(disks, "/dev/"+n)
		}
	}
	sort.Strings(parts)
	sort.Strings(disks)
	return append(parts, disks...)
}

// findDevice resolves spec (/dev/NAME, UUID=..., LABEL=...) to a device
// node, waiting up to wait for it to appear (a USB stick enumerates
// late). It returns what probing found too.
func findDevice(spec string, wait time.Duration) (string, *fsInfo, error) {
	spec = strings.Trim(spec, `"'`)
	key, val, _ := strings.Cut(spec, "=")
	val = strings.Trim(val, `"'`)
	deadline := time.Now().Add(wait)
	for {
		switch {
		case strings.HasPrefix(spec, "/dev/"):
			if st, err := os.Stat(spec); err == nil && st.Mode()&os.ModeDevice != 0 {
				info, _ := probe(spec)
				return spec, info, nil
			}
		case key == "UUID" || key == "LABEL":
			for _, d := range blockDevices("/sys/class/block") {
				info, err := probe(d)
				if err != nil {
					continue
				}
				if key == "UUID" && strings.EqualFold(info.UUID, val) || key == "LABEL" && info.Label == val {
					return d, info, nil
				}
			}
		default:
			return "", nil, fmt.Errorf("card device %q: want /dev/NAME, UUID=... or LABEL=... (PARTUUID and PARTLABEL need udev, which does not run yet)", spec)
		}
		if !time.Now().Before(deadline) {
			return "", nil, fmt.Errorf("card device %s did not appear within %v (is the card or stick inserted? a slow reader: raise BOOT_CARD_WAIT)", spec, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mountOptions turns fstab options into mount(2) flags and data; options
// that only mean something to mount(8) or init are dropped. The card's
// filesystem is always mounted read-write (the image is written).
func mountOptions(opts string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "", "defaults", "auto", "noauto", "nofail", "user", "users", "nouser", "owner", "group", "_netdev", "rw", "ro", "exec", "suid", "dev", "atime", "async":
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "noatime":
			flags |= unix.MS_NOATIME
		case "nodiratime":
			flags |= unix.MS_NODIRATIME
		case "relatime":
			flags |= unix.MS_RELATIME
		case "sync":
			flags |= unix.MS_SYNCHRONOUS
		case "dirsync":
			flags |= unix.MS_DIRSYNC
		default:
			if strings.HasPrefix(o, "x-") || strings.HasPrefix(o, "comment=") {
				continue
			}
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}
