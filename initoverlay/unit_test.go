package initoverlay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/card"
	"github.com/ovpkg/ovpkg/config"
)

func conf(t *testing.T, s string) *config.File {
	t.Helper()
	f, err := config.Parse("test.conf", strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestResolve(t *testing.T) {
	// Defaults: card when the config names one, else tmpfs.
	s := Resolve(nil, nil)
	if s.Upper != UpperTmpfs || s.Fallback != FallbackTmpfs || s.Size != DefaultSize || s.CardWait != DefaultCardWait || s.Init != "" {
		t.Errorf("defaults: %+v", s)
	}
	s = Resolve(conf(t, "SD_ROOTFS=/mnt/sd/card.img\n"), nil)
	if s.Upper != UpperCard {
		t.Errorf("with SD_ROOTFS: upper %s", s.Upper)
	}
	// The command line wins over the config.
	s = Resolve(conf(t, "SD_ROOTFS=/x\nBOOT_UPPER=card\nBOOT_FALLBACK=ro\nBOOT_SIZE=64m\nBOOT_MODULES='usb_storage sd_mod'\n"),
		ParseCmdline(`root=/dev/sda2 ro ovpkg.upper=tmpfs ovpkg.init="/usr/lib/systemd/systemd" ovpkg.cardwait=2.5 ovpkg.unclean=mount quiet`))
	if s.Upper != UpperTmpfs || s.From["BOOT_UPPER"] != "cmdline ovpkg.upper" || s.Fallback != FallbackRO || s.From["BOOT_FALLBACK"] != "config BOOT_FALLBACK" ||
		s.Init != "/usr/lib/systemd/systemd" || s.Size != "64m" || s.Unclean != UncleanMount || s.CardWait != 2500*time.Millisecond || strings.Join(s.Modules, ",") != "usb_storage,sd_mod" {
		t.Errorf("resolved: %+v", s)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("warnings: %v", s.Warnings)
	}
	// Bad values: warned about, defaults used, never a failure.
	s = Resolve(conf(t, "BOOT_UPPER=disk\nBOOT_SIZE=lots\nBOOT_UNCLEAN=yolo\n"), ParseCmdline("ovpkg.fallback=panic ovpkg.init=sbin/init ovpkg.cardwait=-1 ovpkg.uper=off ovpkg.modules=../../evil"))
	if s.Upper != UpperTmpfs || s.Size != DefaultSize || s.Fallback != FallbackTmpfs || s.Init != "" || s.CardWait != DefaultCardWait || len(s.Modules) != 0 {
		t.Errorf("bad values: %+v", s)
	}
	if s.Unclean != UncleanCheck {
		t.Errorf("unclean: %q", s.Unclean)
	}
	if len(s.Warnings) != 8 {
		t.Errorf("want 8 warnings, got %d: %v", len(s.Warnings), s.Warnings)
	}
	for _, v := range []string{"64m", "1G", "30%", "100%", "1048576"} {
		if !validSize(v) {
			t.Errorf("size %q refused", v)
		}
	}
	for _, v := range []string{"0", "0%", "101%", "1mb", "-1m", "m", ""} {
		if validSize(v) {
			t.Errorf("size %q accepted", v)
		}
	}
}

func TestFindCardSource(t *testing.T) {
	fstab := ParseFstab(`# comment
UUID=1234-ABCD  /mnt/sd  vfat  noatime,nofail,x-systemd.automount  0 2
/dev/mmcblk0p2 / ext4 ro 0 1
LABEL=stick /mnt/sd/stick ext4 defaults
proc /proc proc defaults 0 0
/dev/sdb1 /media/with\040space ext2 defaults
`)
	src, err := FindCardSource("/mnt/sd/card.img", fstab, "")
	if err != nil || src.Spec != "UUID=1234-ABCD" || src.Dir != "/mnt/sd" || src.Type != "vfat" || src.From != "fstab" {
		t.Errorf("card on /mnt/sd: %+v %v", src, err)
	}
	if src, _ := FindCardSource("/mnt/sd/stick/card.img", fstab, ""); src.Spec != "LABEL=stick" {
		t.Errorf("longest mount point: %+v", src)
	}
	if src, _ := FindCardSource("/media/with space/card.img", fstab, ""); src == nil || src.Spec != "/dev/sdb1" {
		t.Errorf("escaped space: %+v", src)
	}
	if src, _ := FindCardSource("/mnt/sd/card.img", fstab, "/dev/sdc1"); src.Spec != "/dev/sdc1" || src.Dir != "/mnt/sd" || src.From != "BOOT_CARD_DEV" {
		t.Errorf("BOOT_CARD_DEV: %+v", src)
	}
	if src, _ := FindCardSource("/srv/card.img", fstab, "/dev/sdc1"); src.Dir != "/srv" || src.Type != "auto" {
		t.Errorf("BOOT_CARD_DEV without fstab: %+v", src)
	}
	if _, err := FindCardSource("/var/card.img", fstab, ""); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("image on the root: %v", err)
	}
	flags, data := mountOptions("noatime,nofail,x-systemd.automount,uid=1000,ro,nodev,codepage=437")
	if data != "uid=1000,codepage=437" || flags == 0 {
		t.Errorf("mountOptions: %x %q", flags, data)
	}
}

func TestProbe(t *testing.T) {
	// A FAT32 boot sector.
	b := make([]byte, 4096)
	copy(b[0x52:], "FAT32   ")
	b[0x43], b[0x44], b[0x45], b[0x46] = 0xcd, 0xab, 0x34, 0x12
	copy(b[0x47:], "SDCARD     ")
	b[510], b[511] = 0x55, 0xaa
	p := filepath.Join(t.TempDir(), "fat")
	os.WriteFile(p, b, 0o644)
	info, err := probe(p)
	if err != nil || info.Type != "vfat" || info.UUID != "1234-ABCD" || info.Label != "SDCARD" {
		t.Errorf("probe FAT32: %+v %v", info, err)
	}
	os.WriteFile(p, make([]byte, 4096), 0o644)
	if _, err := probe(p); err == nil {
		t.Error("probe of zeros succeeded")
	}
}

func TestStateRoundTrip(t *testing.T) {
	var s State
	s.Set("STATE", StateFallback)
	s.Set("REASON", "card: it's gone\nreally")
	s.Set("ZZZ", "extra")
	s.Set("EMPTY", "")
	dir := t.TempDir()
	if err := s.Write(dir); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, StateName))
	if !strings.HasPrefix(string(b), "# init-overlay") || strings.Contains(string(b), "EMPTY") || strings.Index(string(b), "STATE=") > strings.Index(string(b), "REASON=") {
		t.Errorf("state file:\n%s", b)
	}
	r, err := ReadState(dir)
	if err != nil || r.Get("REASON") != "card: it's gone; really" || r.Get("ZZZ") != "extra" || r.Get("STATE") != StateFallback {
		t.Errorf("read back: %+v %v", r, err)
	}
}

func TestPendingMarker(t *testing.T) {
	root := t.TempDir()
	l, err := card.Init(root, []string{"usr"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if n, err := MarkPending(l, now); n != 0 || err != nil {
		t.Fatalf("first boot: %d %v", n, err)
	}
	if err := MarkReady(l, now); err != nil {
		t.Fatal(err)
	}
	if n, err := MarkPending(l, now); n != 0 || err != nil {
		t.Fatalf("after READY: %d %v", n, err)
	}
	// Two boots die before READY: the third does not use the card.
	if n, err := MarkPending(l, now); n != 1 || err != nil {
		t.Fatalf("second: %d %v", n, err)
	}
	if n, err := MarkPending(l, now); n != 2 || err == nil || !strings.Contains(err.Error(), "last 2 boots") {
		t.Fatalf("third: %d %v", n, err)
	}
	if ok, err := ClearPending(l); !ok || err != nil {
		t.Fatalf("ClearPending: %v %v", ok, err)
	}
	if n, err := MarkPending(l, now); n != 0 || err != nil {
		t.Fatalf("after boot ok: %d %v", n, err)
	}
}
