package trust

import (
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/image"
	"github.com/ovpkg/ovpkg/image/ext2"
	"github.com/ovpkg/ovpkg/internal/nstest"
)

func openNew(t *testing.T) *Store {
	t.Helper()
	top := t.TempDir()
	os.Chmod(top, 0o755)
	s, err := Open(filepath.Join(top, "lib", "ovpkg"), true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The key is made on first use (32 bytes, 0600, in a 0700 directory) and
// read back unchanged; a second store has the same key.
func TestOpenMakesKey(t *testing.T) {
	nstest.RequireRoot(t)
	s := openNew(t)
	for name, want := range map[string]uint32{s.Dir: 0o700, filepath.Join(s.Dir, KeyName): 0o600} {
		var st unix.Stat_t
		if err := unix.Stat(name, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o7777 != want {
			t.Errorf("%s: mode %o, want %o", name, st.Mode&0o7777, want)
		}
	}
	var pst unix.Stat_t
	if unix.Stat(filepath.Dir(s.Dir), &pst); pst.Mode&0o777 != 0o755 {
		t.Errorf("parent made %o, want 755", pst.Mode&0o777)
	}
	if len(s.key) != 32 {
		t.Fatalf("key of %d bytes", len(s.key))
	}
	s2, err := Open(s.Dir, false)
	if err != nil || string(s2.key) != string(s.key) {
		t.Fatalf("second open: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none"), false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir without create: %v", err)
	}
	if _, err := Open("", true); !errors.Is(err, ErrStore) {
		t.Errorf("no dir: %v", err)
	}
}

// A trust directory or key anyone but root could read or change is
// refused (wrapping ErrStore, saying what to do); a root-owned 0755
// directory is tightened to 0700.
func TestOpenRefuses(t *testing.T) {
	nstest.RequireRoot(t)
	for _, c := range []struct {
		name  string
		spoil func(s *Store)
		want  string
	}{
		{"world-writable dir", func(s *Store) { unix.Chmod(s.Dir, 0o777) }, "writable by group or others"},
		{"sticky world-writable dir", func(s *Store) { unix.Chmod(s.Dir, 0o1777) }, "writable by group or others"},
		{"user-owned dir", func(s *Store) { os.Chown(s.Dir, 1000, 1000) }, "owned by uid 1000"},
		{"readable key", func(s *Store) { os.Chmod(filepath.Join(s.Dir, KeyName), 0o644) }, "not root's alone (uid 0, mode 0644): it may have leaked"},
		{"user-owned key", func(s *Store) { os.Chown(filepath.Join(s.Dir, KeyName), 1000, 0) }, "owned by uid 1000"},
		{"short key", func(s *Store) { os.Truncate(filepath.Join(s.Dir, KeyName), 31) }, "is not 32 bytes"},
		{"key a symbolic link", func(s *Store) {
			k := filepath.Join(s.Dir, KeyName)
			os.Rename(k, k+".real")
			os.Symlink(k+".real", k)
		}, "symbolic link"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openNew(t)
			c.spoil(s)
			_, err := Open(s.Dir, true)
			if !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrStore with %q", err, c.want)
			}
		})
	}
	s := openNew(t)
	unix.Chmod(s.Dir, 0o755)
	if _, err := Open(s.Dir, true); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Stat(s.Dir, &st)
	if st.Mode&0o777 != 0o700 {
		t.Errorf("0755 dir not tightened: %o", st.Mode&0o777)
	}
}

// Remember and Load round-trip; Judge says what changed.
func TestRememberLoadJudge(t *testing.T) {
	nstest.RequireRoot(t)
	s := openNew(t)
	c := Card{UUID: "0123abcd-0000-4000-8000-000000000001", SuperMAC: "aa", MetaMAC: "bb", PrivMAC: "cc", MountCount: 3, FreeInodes: 10, FreeBlocks: 100}
	if seen, err := s.Load(c.UUID); seen != nil || err != nil {
		t.Fatalf("unknown card: %v %v", seen, err)
	}
	if ok, why := Judge(nil, c); ok || why != "never seen by this host" {
		t.Errorf("nil judged %v %q", ok, why)
	}
	if err := s.Remember(c, "eject"); err != nil {
		t.Fatal(err)
	}
	seen, err := s.Load(c.UUID)
	if err != nil || seen == nil || seen.Card != c || seen.By != "eject" {
		t.Fatalf("loaded %+v %v", seen, err)
	}
	if ok, _ := Judge(seen, c); !ok {
		t.Error("the same card is not judged unchanged")
	}
	now := c
	now.SuperMAC, now.MountCount, now.FreeInodes = "ab", 5, 9
	ok, why := Judge(seen, now)
	if ok || !strings.Contains(why, "mounted 2 time(s) elsewhere") || !strings.Contains(why, "+1 inodes") {
		t.Errorf("judged %v %q", ok, why)
	}
	now = c
	now.MetaMAC = "xx"
	if ok, why := Judge(seen, now); ok || !strings.Contains(why, "ovpkg's metadata on it differs") {
		t.Errorf("meta: %v %q", ok, why)
	}
	os.WriteFile(filepath.Join(s.Dir, cardPrefix+c.UUID), []byte("{"), 0o600)
	if _, err := s.Load(c.UUID); !errors.Is(err, ErrStore) {
		t.Errorf("damaged memory: %v", err)
	}
	if _, err := s.Load("../../etc/passwd"); err == nil {
		t.Error("a UUID with a path was accepted")
	}
}

// Meta changes with ovpkg's metadata, never follows a symbolic link (an
// ovpkg directory or stack file that is a link to identical content still
// differs), and matches Empty on a card without ovpkg.
func TestMeta(t *testing.T) {
	nstest.RequireRoot(t)
	s := openNew(t)
	card := t.TempDir()
	var empty Card
	s.Empty(&empty)
	var c Card
	if err := s.Scan(card, &c); err != nil {
		t.Fatal(err)
	}
	if c.MetaMAC != empty.MetaMAC || c.PrivMAC != empty.PrivMAC || c.PrivCount != 0 {
		t.Errorf("a card without ovpkg differs from Empty")
	}
	os.MkdirAll(filepath.Join(card, "ovpkg", "layers", "0001", "tree"), 0o755)
	os.WriteFile(filepath.Join(card, "ovpkg", "FORMAT"), []byte("ovpkg-card 1\n"), 0o644)
	os.WriteFile(filepath.Join(card, "ovpkg", "stack"), []byte("0001\n"), 0o644)
	m1, err := s.Meta(card)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Meta(card); m != m1 {
		t.Fatal("Meta is not deterministic")
	}
	os.WriteFile(filepath.Join(card, "ovpkg", "stack"), []byte("0002\n"), 0o644)
	if m, _ := s.Meta(card); m == m1 {
		t.Error("a changed stack keeps the MAC")
	}
	os.WriteFile(filepath.Join(card, "ovpkg", "stack"), []byte("0001\n"), 0o644)
	os.Mkdir(filepath.Join(card, "ovpkg", "layers", "0002"), 0o755)
	if m, _ := s.Meta(card); m == m1 {
		t.Error("a new layer directory keeps the MAC")
	}
	os.Remove(filepath.Join(card, "ovpkg", "layers", "0002"))
	if m, _ := s.Meta(card); m != m1 {
		t.Fatal("back as it was, the MAC differs")
	}
	// stack as a link to identical content elsewhere
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "stack"), []byte("0001\n"), 0o644)
	os.Rename(filepath.Join(card, "ovpkg", "stack"), filepath.Join(card, "stack.old"))
	os.Symlink(filepath.Join(other, "stack"), filepath.Join(card, "ovpkg", "stack"))
	if m, err := s.Meta(card); err != nil || m == m1 {
		t.Errorf("a symbolic link as the stack: %v, same MAC %v", err, m == m1)
	}
	// the whole ovpkg directory a link to an identical copy
	os.Remove(filepath.Join(card, "ovpkg", "stack"))
	os.Rename(filepath.Join(card, "stack.old"), filepath.Join(card, "ovpkg", "stack"))
	os.Rename(filepath.Join(card, "ovpkg"), filepath.Join(other, "ovpkg"))
	os.Symlink(filepath.Join(other, "ovpkg"), filepath.Join(card, "ovpkg"))
	if m, err := s.Meta(card); err != nil || m == m1 {
		t.Errorf("ovpkg a symbolic link: %v, same MAC %v", err, m == m1)
	}
}

// Privileged finds setuid and setgid files and file capabilities, and
// changes with their mode, owner or content.
func TestPrivileged(t *testing.T) {
	nstest.RequireRoot(t)
	s := openNew(t)
	card := t.TempDir()
	os.MkdirAll(filepath.Join(card, "a", "b"), 0o755)
	f := filepath.Join(card, "a", "b", "prog")
	os.WriteFile(f, []byte("binary"), 0o755)
	m0, n, err := s.Privileged(card)
	if err != nil || n != 0 {
		t.Fatalf("%d privileged, %v", n, err)
	}
	step := func(what string, change func(), wantN int) string {
		t.Helper()
		change()
		m, n, err := s.Privileged(card)
		if err != nil || n != wantN || m == m0 {
			t.Errorf("%s: %d privileged (want %d), same MAC %v, %v", what, n, wantN, m == m0, err)
		}
		m0 = m
		return m
	}
	step("setuid", func() { unix.Chmod(f, 0o4755) }, 1)
	step("content", func() { os.WriteFile(f, []byte("other!"), 0o4755); unix.Chmod(f, 0o4755) }, 1)
	step("group", func() { os.Chown(f, 0, 1000); unix.Chmod(f, 0o4755) }, 1) // chown clears the bit
	step("setgid too", func() { unix.Chmod(f, 0o6755) }, 1)
	step("not privileged", func() { unix.Chmod(f, 0o755) }, 0)
	// cap_net_raw+ep, as setcap writes it (VFS_CAP_REVISION_2).
	caps := []byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if err := unix.Setxattr(f, capXattr, caps, 0); err != nil {
		t.Skipf("file capabilities on %s: %v", card, err)
	}
	_, n, _ = s.Privileged(card)
	if n != 1 {
		t.Errorf("a file with capabilities is not privileged (%d)", n)
	}
	// Not executable and root's: nobody can make it run, so it is not
	// looked at; a user's (who could chmod +x it) is.
	unix.Chmod(f, 0o644)
	if _, n, _ = s.Privileged(card); n != 0 {
		t.Errorf("root's non-executable file with capabilities counted (%d)", n)
	}
	os.Chown(f, 1000, 1000)
	unix.Setxattr(f, capXattr, caps, 0)
	if _, n, _ = s.Privileged(card); n != 1 {
		t.Errorf("a user's non-executable file with capabilities is not privileged (%d)", n)
	}
}

// What the comparison rests on, checked against e2fsprogs: a file written
// with debugfs -w changes the superblock (free counts, lifetime writes),
// so the superblock MAC differs; debugfs's "sif FILE mode 04755" rewrites
// the inode in place and leaves the superblock byte for byte as it was,
// which is why the privileged files are compared too.
func TestDebugfsEditsAndTheSuperblock(t *testing.T) {
	nstest.Need(t, "debugfs")
	nstest.RequireRoot(t)
	s := openNew(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "card.img")
	p, err := image.Prepare(img, image.Options{Size: 16 * image.MiB, Table: image.TableDOS})
	if err != nil {
		t.Fatal(err)
	}
	info := p.Info()
	if _, err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	part := img + "?offset=" + itoa(info.PartStart)
	super := func() Card {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		raw := make([]byte, ext2.SuperblockSize)
		f.ReadAt(raw, info.PartStart+ext2.SuperblockOffset)
		c, err := s.Super(raw)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	debugfs := func(cmds string) {
		t.Helper()
		cmd := exec.Command("debugfs", "-w", "-f", "-", part)
		cmd.Stdin = strings.NewReader(cmds)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("debugfs: %v\n%s", err, out)
		}
	}
	c0 := super()
	if c0.UUID != info.UUID {
		t.Errorf("UUID %s, want %s", c0.UUID, info.UUID)
	}
	prog := filepath.Join(dir, "prog")
	os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755)
	debugfs("write " + prog + " prog\n")
	c1 := super()
	if c1.SuperMAC == c0.SuperMAC || c1.FreeInodes != c0.FreeInodes-1 {
		t.Errorf("debugfs write: superblock MAC unchanged %v, free inodes %d -> %d", c1.SuperMAC == c0.SuperMAC, c0.FreeInodes, c1.FreeInodes)
	}
	// Even with the write time forged back, the free counts give it away.
	cmd := exec.Command("debugfs", "-w", "-R", "write "+prog+" prog2", part)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME="+itoa(c1.WriteTime))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	c2 := super()
	if c2.WriteTime != c1.WriteTime || c2.SuperMAC == c1.SuperMAC {
		t.Errorf("forged write time: %d -> %d, MAC unchanged %v", c1.WriteTime, c2.WriteTime, c2.SuperMAC == c1.SuperMAC)
	}
	debugfs("sif prog mode 0104755\nsif prog uid 0\n")
	if c3 := super(); c3.SuperMAC != c2.SuperMAC {
		t.Log("debugfs sif changed the superblock on this e2fsprogs")
	} else {
		t.Log("debugfs sif left the superblock unchanged: only the privileged-file scan sees it")
	}
}

func itoa[T int64 | int](n T) string { return strconv.FormatInt(int64(n), 10) }

// The HMAC is RFC 4231's HMAC-SHA256 (test cases 1 and 6: a short and a
// longer-than-a-block key).
func TestHMAC(t *testing.T) {
	for _, c := range []struct{ key, data, want string }{
		{strings.Repeat("\x0b", 20), "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{strings.Repeat("\xaa", 131), "Test Using Larger Than Block-Size Key - Hash Key First", "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	} {
		h := newHMAC([]byte(c.key))
		h.Write([]byte(c.data))
		if got := hex.EncodeToString(h.Sum(nil)); got != c.want {
			t.Errorf("HMAC %q: %s, want %s", c.data, got, c.want)
		}
	}
}
