package trust

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/image/ext2"
	"github.com/ovpkg/ovpkg/internal/atomicfile"
	"github.com/ovpkg/ovpkg/internal/faults"
	"github.com/ovpkg/ovpkg/internal/trustpath"
)

// DefaultDir is where the host keeps its key and the memory of cards
// when the config has no TRUST_DIR.
const DefaultDir = "/var/lib/ovpkg"

// KeyName is the host key's file in the trust directory: 32 random bytes,
// mode 0600.
const KeyName = "card-key"

const (
	keySize     = 32
	cardPrefix  = "card-"
	maxSeenSize = 64 * 1024
	seenVersion = 1
)

// ErrStore: the trust directory or the key cannot be used (not root-only,
// damaged). Errors wrap it (and the errno where a system call failed).
var ErrStore = errors.New("the host's card memory is unusable")

// Default is the trust directory when the config names none: DefaultDir.
// Test builds (ovpkg_testhooks) use $OVPKG_TEST_TRUST_DIR instead, and
// none at all (every card unknown, nothing remembered) without it, so
// that no test reaches this machine's /var.
func Default() string {
	if faults.Enabled {
		return faults.Setting("TRUST_DIR")
	}
	return DefaultDir
}

// Store is an opened trust directory: checked root-only, with its key.
type Store struct {
	Dir string // resolved (no symbolic links)
	key []byte
}

// Open checks the trust directory dir (absolute) and reads its key. With
// create, a missing directory is made (0700) and a missing key is made
// with crypto/rand. The directory must be one only root can change
// (internal/trustpath: every directory above it too), not writable by
// group or others; read and search bits for others are taken away (it is
// made 0700). The key must be a root-owned regular file, 0600 or
// stricter, of 32 bytes. Refusals wrap ErrStore and say how to fix it.
func Open(dir string, create bool) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: no trust directory (set TRUST_DIR in the config)", ErrStore)
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("%w: TRUST_DIR %s is not an absolute path", ErrStore, dir)
	}
	rdir, err := trustpath.Dir(dir)
	if err != nil && create && errors.Is(err, fs.ErrNotExist) {
		// Parents as usual (/var/lib is 0755), the directory itself 0700.
		merr := os.MkdirAll(filepath.Dir(dir), 0o755)
		if merr == nil {
			if merr = os.Mkdir(dir, 0o700); errors.Is(merr, fs.ErrExist) {
				merr = nil
			}
		}
		if merr != nil {
			return nil, fmt.Errorf("%w: creating %s: %w", ErrStore, dir, merr)
		}
		rdir, err = trustpath.Dir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(rdir, &st); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStore, dir, err)
	}
	if st.Uid != 0 {
		return nil, fmt.Errorf("%w: %s is owned by uid %d, not root (run: chown root:root %s)", ErrStore, dir, st.Uid, rdir)
	}
	if st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("%w: %s is writable by group or others (mode %04o; run: chmod 700 %s)", ErrStore, dir, st.Mode&0o7777, rdir)
	}
	if st.Mode&0o077 != 0 {
		// Root's and written by root alone: nobody else put anything in
		// it; make it 0700 as it should be.
		if err := unix.Chmod(rdir, 0o700); err != nil {
			return nil, fmt.Errorf("%w: making %s mode 0700: %w", ErrStore, dir, err)
		}
	}
	s := &Store{Dir: rdir}
	if s.key, err = readKey(rdir, create); err != nil {
		return nil, err
	}
	return s, nil
}

// readKey reads (or with create, makes) the key in the checked rdir.
func readKey(rdir string, create bool) ([]byte, error) {
	path := filepath.Join(rdir, KeyName)
	f, err := trustpath.OpenIn(rdir, KeyName, unix.O_RDONLY, 0)
	if err != nil && create && errors.Is(err, fs.ErrNotExist) {
		if err := makeKey(rdir); err != nil {
			return nil, err
		}
		f, err = trustpath.OpenIn(rdir, KeyName, unix.O_RDONLY, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the key: %w", ErrStore, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStore, path, err)
	}
	if st.Uid != 0 || st.Mode&0o077 != 0 {
		return nil, fmt.Errorf("%w: the key %s is not root's alone (uid %d, mode %04o): it may have leaked; remove it (every card is then unknown until ovmount --trust)", ErrStore, path, st.Uid, st.Mode&0o7777)
	}
	key := make([]byte, keySize+1)
	n, err := io.ReadFull(f, key)
	if err != io.ErrUnexpectedEOF || n != keySize {
		return nil, fmt.Errorf("%w: the key %s is not %d bytes: damaged; remove it (every card is then unknown until ovmount --trust)", ErrStore, path, keySize)
	}
	return key[:keySize], nil
}

// makeKey writes a new key beside its name and links it into place, so a
// key is never half-written and a concurrent creator's key is not
// replaced (the loser reads the winner's).
func makeKey(rdir string) error {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("%w: making a key: %w", ErrStore, err)
	}
	tmp, err := os.CreateTemp(rdir, "."+KeyName+".tmp*")
	if err != nil {
		return fmt.Errorf("%w: making a key: %w", ErrStore, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("%w: making a key: %w", ErrStore, err)
	}
	if _, err := tmp.Write(key); err != nil {
		return fmt.Errorf("%w: making a key: %w", ErrStore, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%w: making a key: %w", ErrStore, err)
	}
	if err := os.Link(tmp.Name(), filepath.Join(rdir, KeyName)); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: making a key: %w", ErrStore, err)
	}
	return atomicfile.SyncDir(rdir)
}

// Card is what the host compares: the card's superblock as it was at a
// clean eject (the whole of it, MAC'ed, plus the fields messages name)
// and ovpkg's metadata on the card (MAC'ed).
type Card struct {
	UUID     string `json:"uuid"`
	SuperMAC string `json:"super_mac"` // HMAC-SHA256 of the 1024-byte superblock
	MetaMAC  string `json:"meta_mac"`  // HMAC-SHA256 of ovpkg's metadata (Meta)
	// PrivMAC is the HMAC-SHA256 of the card's privileged files
	// (Privileged: setuid, setgid, file capabilities; names, owners,
	// modes, contents), PrivCount how many there are.
	PrivMAC       string `json:"priv_mac"`
	PrivCount     int    `json:"priv_count"`
	WriteTime     int64  `json:"write_time"`
	MountTime     int64  `json:"mount_time"`
	MountCount    uint16 `json:"mount_count"`
	KBytesWritten uint64 `json:"kbytes_written"`
	FreeBlocks    uint64 `json:"free_blocks"`
	FreeInodes    uint32 `json:"free_inodes"`
}

// Seen is the memory of one card: what it was when this host last
// ejected it cleanly (or made it).
type Seen struct {
	Version int `json:"version"`
	Card
	At time.Time `json:"at"`
	By string    `json:"by"` // "eject" or "mkoverlay"
}

func (s *Store) mac(domain string) hash.Hash {
	h := newHMAC(s.key)
	h.Write([]byte("ovpkg card trust v1 " + domain + "\x00"))
	return h
}

// hmacSHA256 is HMAC-SHA256 (RFC 2104) on crypto/sha256 alone: the
// standard crypto/hmac pulls crypto/sha3 and the FIPS hash plumbing into
// the binary (64 KiB on mipsle) for the same 20 lines.
type hmacSHA256 struct {
	inner, outer hash.Hash
}

func newHMAC(key []byte) *hmacSHA256 {
	if len(key) > sha256.BlockSize {
		k := sha256.Sum256(key)
		key = k[:]
	}
	var ipad, opad [sha256.BlockSize]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	h := &hmacSHA256{inner: sha256.New(), outer: sha256.New()}
	h.inner.Write(ipad[:])
	h.outer.Write(opad[:])
	return h
}

func (h *hmacSHA256) Write(p []byte) (int, error) { return h.inner.Write(p) }
func (h *hmacSHA256) Size() int                   { return sha256.Size }
func (h *hmacSHA256) BlockSize() int              { return sha256.BlockSize }
func (h *hmacSHA256) Reset()                      { panic("trust: HMAC is used once") }

// Sum appends the MAC of what was written (h can be used only once).
func (h *hmacSHA256) Sum(b []byte) []byte {
	h.outer.Write(h.inner.Sum(nil))
	return h.outer.Sum(b)
}

// equalMAC compares two hex MACs in constant time.
func equalMAC(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// Super fingerprints a raw superblock (1024 bytes, as on the disk).
func (s *Store) Super(raw []byte) (Card, error) {
	sb, err := ext2.ParseSuperblock(raw)
	if err != nil {
		return Card{}, err
	}
	h := s.mac("superblock")
	h.Write(raw[:ext2.SuperblockSize])
	return Card{
		UUID:          FormatUUID(sb.UUID),
		SuperMAC:      hex.EncodeToString(h.Sum(nil)),
		WriteTime:     int64(sb.WriteTime),
		MountTime:     int64(sb.MountTime),
		MountCount:    sb.MountCount,
		KBytesWritten: binary.LittleEndian.Uint64(raw[0x178:]),
		FreeBlocks:    sb.FreeBlocks,
		FreeInodes:    sb.FreeInodes,
	}, nil
}

// FormatUUID formats a filesystem UUID as blkid does (lowercase).
func FormatUUID(u [16]byte) string {
	x := hex.EncodeToString(u[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func validUUID(u string) bool {
	if len(u) != 36 {
		return false
	}
	for i, c := range u {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// Load returns the memory of the card with uuid, nil when this host has
// none.
func (s *Store) Load(uuid string) (*Seen, error) {
	if !validUUID(uuid) {
		return nil, fmt.Errorf("card UUID %q is not canonical", uuid)
	}
	b, err := trustpath.ReadIn(s.Dir, cardPrefix+uuid, maxSeenSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	var seen Seen
	if err := json.Unmarshal(b, &seen); err != nil || seen.Version != seenVersion || seen.UUID != uuid {
		return nil, fmt.Errorf("%w: %s is damaged (remove it; the card is then unknown until ovmount --trust)", ErrStore, filepath.Join(s.Dir, cardPrefix+uuid))
	}
	return &seen, nil
}

// Remember records c as seen now (by "eject" or "mkoverlay"), replacing
// what was remembered of the card (atomically, mode 0600).
func (s *Store) Remember(c Card, by string) error {
	if !validUUID(c.UUID) {
		return fmt.Errorf("card UUID %q is not canonical", c.UUID)
	}
	b, err := json.MarshalIndent(Seen{Version: seenVersion, Card: c, At: time.Now().UTC(), By: by}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.Dir, cardPrefix+c.UUID), append(b, '\n'), 0o600)
}

// Judge compares what the card is now with what was remembered. ok means
// the card is as this host left it; otherwise why says, in words, what
// changed ("never seen by this host", "mounted 2 times elsewhere since
// ...").
func Judge(seen *Seen, now Card) (ok bool, why string) {
	if seen == nil {
		return false, "never seen by this host"
	}
	at := seen.At.Local().Format("2006-01-02 15:04")
	if equalMAC(seen.SuperMAC, now.SuperMAC) && equalMAC(seen.MetaMAC, now.MetaMAC) && equalMAC(seen.PrivMAC, now.PrivMAC) {
		return true, ""
	}
	var what []string
	if d := int(now.MountCount) - int(seen.MountCount); d != 0 {
		what = append(what, fmt.Sprintf("mounted %d time(s) elsewhere", d))
	}
	if now.WriteTime != seen.WriteTime {
		what = append(what, "written at "+time.Unix(now.WriteTime, 0).Local().Format("2006-01-02 15:04:05"))
	}
	if now.FreeBlocks != seen.FreeBlocks || now.FreeInodes != seen.FreeInodes {
		what = append(what, fmt.Sprintf("files added or removed (%+d inodes, %+d blocks in use)",
			int64(seen.FreeInodes)-int64(now.FreeInodes), int64(seen.FreeBlocks)-int64(now.FreeBlocks)))
	}
	if now.KBytesWritten != seen.KBytesWritten {
		what = append(what, fmt.Sprintf("%d KiB written", int64(now.KBytesWritten)-int64(seen.KBytesWritten)))
	}
	if len(what) == 0 && seen.SuperMAC != now.SuperMAC {
		what = append(what, "its superblock differs")
	}
	// Scan may have been skipped (now without MACs): its parts are named
	// only when they were compared.
	if now.MetaMAC != "" && seen.MetaMAC != now.MetaMAC {
		what = append(what, "ovpkg's metadata on it differs")
	}
	if now.PrivMAC != "" && seen.PrivMAC != now.PrivMAC {
		what = append(what, fmt.Sprintf("its setuid/setgid/capability files differ (%d now, %d then)", now.PrivCount, seen.PrivCount))
	}
	return false, fmt.Sprintf("changed since this host last ejected it (%s): %s", at, strings.Join(what, ", "))
}

// metaFiles are the files of ovpkg's metadata on a card (below
// <card>/ovpkg) that Meta covers, besides the names in layers/.
var metaFiles = []string{"FORMAT", "stack", "txn", "history", "trial", "boot", "base/sums"}

// Meta MACs ovpkg's metadata on the card mounted at cardRoot: the files
// metaFiles (content, or that they are missing or not regular files) and
// the entries of ovpkg/layers (names and types). Everything is opened
// below cardRoot one component at a time with O_NOFOLLOW, on the card's
// own filesystem only: a symbolic link or a mount on the way is never
// followed (it counts as "not a regular file", so the MAC differs).
func (s *Store) Meta(cardRoot string) (string, error) {
	root, err := unix.Open(cardRoot, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: cardRoot, Err: err}
	}
	defer unix.Close(root)
	var rst unix.Stat_t
	if err := unix.Fstat(root, &rst); err != nil {
		return "", &os.PathError{Op: "stat", Path: cardRoot, Err: err}
	}
	h := s.mac("metadata")
	top, err := openBeneath(root, uint64(rst.Dev), "ovpkg", true)
	if err != nil {
		if !missing(err) {
			return "", err
		}
		fmt.Fprintf(h, "ovpkg %s\x00", kind(err))
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	defer unix.Close(top)
	for _, name := range metaFiles {
		fmt.Fprintf(h, "%s\x00", name)
		fd, err := openBeneath(top, uint64(rst.Dev), name, false)
		if err != nil {
			if !missing(err) {
				return "", fmt.Errorf("%s/ovpkg/%s: %w", cardRoot, name, err)
			}
			fmt.Fprintf(h, "%s\x00", kind(err))
			continue
		}
		f := os.NewFile(uintptr(fd), name)
		st, err := f.Stat()
		if err == nil {
			fmt.Fprintf(h, "file %d\x00", st.Size())
			_, err = io.Copy(h, f)
		}
		f.Close()
		if err != nil {
			return "", fmt.Errorf("reading %s/ovpkg/%s: %w", cardRoot, name, err)
		}
	}
	h.Write([]byte("layers\x00"))
	fd, err := openBeneath(top, uint64(rst.Dev), "layers", true)
	if err != nil {
		if !missing(err) {
			return "", fmt.Errorf("%s/ovpkg/layers: %w", cardRoot, err)
		}
		fmt.Fprintf(h, "%s\x00", kind(err))
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	d := os.NewFile(uintptr(fd), "layers")
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return "", fmt.Errorf("reading %s/ovpkg/layers: %w", cardRoot, err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	for _, e := range ents {
		fmt.Fprintf(h, "%s %o\x00", e.Name(), uint32(e.Type()))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Scan fills in c what is on the card mounted at cardRoot: ovpkg's
// metadata (Meta) and the privileged files (Privileged).
func (s *Store) Scan(cardRoot string, c *Card) error {
	var err error
	if c.MetaMAC, err = s.Meta(cardRoot); err != nil {
		return err
	}
	c.PrivMAC, c.PrivCount, err = s.Privileged(cardRoot)
	return err
}

// Empty fills in c what Scan finds on a new card: no ovpkg metadata, no
// privileged files.
func (s *Store) Empty(c *Card) {
	h := s.mac("metadata")
	fmt.Fprintf(h, "ovpkg %s\x00", kind(unix.ENOENT))
	c.MetaMAC = hex.EncodeToString(h.Sum(nil))
	c.PrivMAC, c.PrivCount = hex.EncodeToString(s.mac("privileged").Sum(nil)), 0
}

// openBeneath opens rel (slash-separated, below dirfd) one component at
// a time with O_NOFOLLOW, each on the filesystem dev; dir says the last
// component must be a directory, else a regular file.
func openBeneath(dirfd int, dev uint64, rel string, dir bool) (int, error) {
	parts := strings.Split(rel, "/")
	cur := dirfd
	for i, p := range parts {
		last := i == len(parts)-1
		flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
		if !last || dir {
			flags |= unix.O_DIRECTORY
		}
		fd, err := unix.Openat(cur, p, flags, 0)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if uint64(st.Dev) != dev {
			unix.Close(fd)
			return -1, unix.EXDEV
		}
		if last && !dir && st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return -1, unix.EINVAL
		}
		cur = fd
	}
	return cur, nil
}

// missing says whether err from openBeneath means "not there as a plain
// file or directory" (recorded in the MAC) rather than a failure to read.
func missing(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) ||
		errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.EACCES)
}

func kind(err error) string {
	if errors.Is(err, unix.ENOENT) {
		return "missing"
	}
	return "not-plain " + err.Error()
}

// capXattr is where file capabilities live.
const capXattr = "security.capability"

// Privileged MACs the card's privileged files: every regular file below
// cardRoot (the whole card filesystem, symbolic links never followed,
// other filesystems not entered) that is setuid or setgid or carries file
// capabilities (looked up unless the file is root's without execute
// bits), with its path, owner, group, mode, size, capabilities and
// content. It catches what the superblock does not show: debugfs's "sif
// FILE mode 04755" rewrites an inode in place and leaves the superblock
// byte for byte as it was.
func (s *Store) Privileged(cardRoot string) (mac string, n int, err error) {
	var rst unix.Stat_t
	if err := unix.Lstat(cardRoot, &rst); err != nil {
		return "", 0, &os.PathError{Op: "lstat", Path: cardRoot, Err: err}
	}
	h := s.mac("privileged")
	caps := make([]byte, 256)
	err = filepath.WalkDir(cardRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return &os.PathError{Op: "lstat", Path: p, Err: err}
			}
			if st.Dev != rst.Dev {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		// Capabilities only act on exec, and nothing without an execute
		// bit is executed; a root-owned file's mode only root can change.
		// So a root-owned file without execute bits (most of a package
		// tree: data, docs) needs no xattr lookup; any other file does (its
		// owner could chmod +x it, which keeps the capabilities).
		nc := 0
		if st.Mode&0o111 != 0 || st.Uid != 0 {
			var cerr error
			nc, cerr = unix.Lgetxattr(p, capXattr, caps)
			if cerr != nil {
				nc = 0
				if cerr == unix.ERANGE {
					nc = -1 // larger than any valid one: privileged all the same
				}
			}
		}
		if st.Mode&(unix.S_ISUID|unix.S_ISGID) == 0 && nc == 0 {
			return nil
		}
		n++
		rel, _ := filepath.Rel(cardRoot, p)
		fmt.Fprintf(h, "%q %d %d %o %d %x\x00", rel, st.Uid, st.Gid, st.Mode, st.Size, caps[:max(nc, 0)])
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", 0, fmt.Errorf("looking for setuid files on the card: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
