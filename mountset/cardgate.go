package mountset

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/image/ext2"
	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/overlay"
	"github.com/ovpkg/ovpkg/trust"
)

// The setuid gate (issue 9, item 2): a card this host did not leave as it
// is now (changed elsewhere since its last clean eject here, or never
// seen) gets its overlays mounted nosuid, which also disables file
// capabilities on exec, until the user approves it with ovmount --trust.
// The card mount itself is always nosuid (CardFlags). The trust package
// keeps the memory; this file decides and applies it.

// Trust states of a mounted card (CardTrust.State).
const (
	// TrustSeen: as this host left it at its last clean eject (or
	// mkoverlay): setuid works.
	TrustSeen = "seen"
	// TrustApproved: approved with --trust: setuid works, and a clean
	// eject remembers it.
	TrustApproved = "approved"
	// TrustChanged: changed since this host last ejected it: nosuid.
	TrustChanged = "changed"
	// TrustUnknown: never seen by this host, or the memory cannot be
	// used: nosuid.
	TrustUnknown = "unknown"
	// TrustBoot: mounted by init-overlay as the system's own card; not
	// gated (see docs/trust.md).
	TrustBoot = "boot"
)

// CardTrust is what ovmount decided about setuid on the card, kept in the
// record (and shown by ovmount --json and ovpkg status --json).
type CardTrust struct {
	State string `json:"state"`
	// Setuid is true when setuid, setgid and file capabilities work on
	// the overlays (false: they are mounted nosuid).
	Setuid bool   `json:"setuid"`
	Why    string `json:"why,omitempty"`
	// SeenAt is when this host last remembered the card.
	SeenAt *time.Time `json:"seen_at,omitempty"`
}

// NoSuid says whether r's overlays are mounted nosuid (the card is not
// trusted). Records of an older ovpkg carry no trust: not nosuid.
func (r *Record) NoSuid() bool { return r.CardTrust != nil && !r.CardTrust.Setuid }

var trustStates = map[string]bool{TrustSeen: true, TrustApproved: true, TrustChanged: true, TrustUnknown: true, TrustBoot: true}

// checkTrust validates the record's CardTrust (untrusted input): a known
// state, setuid only for trusted states, every overlay nosuid otherwise.
func (r *Record) checkTrust() error {
	t := r.CardTrust
	if t == nil {
		return nil
	}
	if !trustStates[t.State] || len(t.Why) > maxPath {
		return fmt.Errorf("card_trust %q is not one ovpkg writes", t.State)
	}
	if t.Setuid != (t.State == TrustSeen || t.State == TrustApproved || t.State == TrustBoot) {
		return fmt.Errorf("card_trust %s with setuid %v", t.State, t.Setuid)
	}
	for _, m := range r.Overlays {
		if !t.Setuid && !m.NoSuid {
			return fmt.Errorf("overlay on %s is not nosuid on a card that is not trusted", m.Target)
		}
	}
	return nil
}

// readSuper reads the raw superblock of the card whose partition starts
// at off in the open image f.
func readSuper(f *os.File, off int64) ([]byte, error) {
	b := make([]byte, ext2.SuperblockSize)
	if _, err := f.ReadAt(b, off+ext2.SuperblockOffset); err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading the superblock of %s: %w", f.Name(), err)
	}
	return b, nil
}

// gateCard decides, once the card is mounted (nosuid) at rec.CardMount
// and before any overlay is, whether setuid may work on the overlays:
// the card's superblock before this mount (raw) and ovpkg's metadata on
// it now are compared with what this host remembers. It says so in one
// line when setuid is off. It never fails: whatever goes wrong keeps the
// card nosuid and says why.
func gateCard(opt Options, e *env, rec *Record, raw []byte) *CardTrust {
	if opt.Base != "" {
		// init-overlay (the only caller with a separate base): the card
		// is the system's own root, mounted before anything else runs,
		// and rarely ejected cleanly; see docs/trust.md.
		return &CardTrust{State: TrustBoot, Setuid: true}
	}
	st, err := openStore(e, rec)
	if opt.Trust {
		if err != nil {
			printf(opt, "warning: %v; eject cannot remember this card as seen\n", err)
		}
		printf(opt, "card %s approved (--trust): setuid, setgid and file capabilities work on its overlays; a clean eject remembers it as this host's\n", rec.UUID)
		return &CardTrust{State: TrustApproved, Setuid: true}
	}
	var now trust.Card
	var seen *trust.Seen
	if err == nil {
		now, err = st.Super(raw)
	}
	if err == nil {
		seen, err = st.Load(now.UUID)
	}
	if err == nil && seen != nil && seen.SuperMAC == now.SuperMAC {
		// Only a card whose superblock is as remembered can be trusted:
		// the scan of every file is skipped for the others.
		err = st.Scan(rec.CardMount, &now)
	}
	t := &CardTrust{State: TrustUnknown}
	if err != nil {
		t.Why = err.Error()
	} else {
		ok, why := trust.Judge(seen, now)
		if ok {
			at := seen.At
			return &CardTrust{State: TrustSeen, Setuid: true, SeenAt: &at}
		}
		t.Why = why
		if seen != nil {
			t.State = TrustChanged
			at := seen.At
			t.SeenAt = &at
		}
	}
	printf(opt, "warning: card %s %s: setuid, setgid and file capabilities are off on its overlays (the base's own too, such as su) until you approve it: ovmount --trust\n", rec.UUID, t.Why)
	return t
}

// approveMounted is ovmount --trust on a card mounted nosuid: the
// overlays that are up lose nosuid in place (mount_setattr, or a bind
// remount on kernels before 5.12) and the record says approved.
func approveMounted(opt Options, e *env, rec *Record, tab mount.Table) error {
	for i, m := range rec.Overlays {
		if !isOurOverlay(tab, m) {
			continue
		}
		if err := allowSetuid(m.Target); err != nil {
			return fmt.Errorf("allowing setuid on the overlay %s: %w", m.Target, err)
		}
		rec.Overlays[i].NoSuid = false
	}
	rec.CardTrust = &CardTrust{State: TrustApproved, Setuid: true}
	if err := writeRecord(e.runDir, rec); err != nil {
		return err
	}
	printf(opt, "card %s approved (--trust): setuid, setgid and file capabilities now work on its overlays; a clean eject remembers it as this host's\n", rec.UUID)
	return nil
}

// allowSetuid clears nosuid on the mount at target, keeping its other
// flags.
func allowSetuid(target string) error {
	err := unix.MountSetattr(unix.AT_FDCWD, target, 0, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_NOSUID})
	if errors.Is(err, unix.ENOSYS) {
		err = unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|overlay.MountFlags, "")
	}
	return err
}

// cardContents is eject's scan of the card (ovpkg's metadata, the
// privileged files), taken with the overlays down and the card still
// mounted; nil when the card is not to be remembered (not trusted on
// this mount, boot) or cannot be read.
func cardContents(opt Options, e *env, rec *Record) *trust.Card {
	if rec.CardTrust == nil || (rec.CardTrust.State != TrustSeen && rec.CardTrust.State != TrustApproved) {
		return nil
	}
	st, err := openStore(e, rec)
	if err == nil {
		var c trust.Card
		if err = st.Scan(rec.CardMount, &c); err == nil {
			return &c
		}
	}
	printf(opt, "warning: the card is not remembered as seen (%v): the next ovmount mounts it with setuid off unless --trust\n", err)
	return nil
}

// rememberCard records the card, unmounted and detached after a clean
// flush, as this host leaves it: its superblock now and what
// cardContents found on it. A failure is a warning: the card is safe to remove anyway,
// and the next ovmount only keeps setuid off.
func rememberCard(opt Options, e *env, rec *Record, contents *trust.Card) {
	if contents == nil {
		return
	}
	err := func() error {
		st, err := openStore(e, rec)
		if err != nil {
			return err
		}
		l, err := waitImageLock(rec.Image)
		if err != nil {
			return err
		}
		defer l.release()
		if (rec.ImageDev != 0 || rec.ImageIno != 0) && (l.dev != rec.ImageDev || l.ino != rec.ImageIno) {
			return fmt.Errorf("%s is no longer the file that was mounted", rec.Image)
		}
		raw, err := readSuper(l.f, rec.Offset)
		if err != nil {
			return err
		}
		c, err := st.Super(raw)
		if err != nil {
			return err
		}
		c.MetaMAC, c.PrivMAC, c.PrivCount = contents.MetaMAC, contents.PrivMAC, contents.PrivCount
		return st.Remember(c, "eject")
	}()
	if err != nil {
		printf(opt, "warning: the card is not remembered as seen (%v): the next ovmount mounts it with setuid off unless --trust\n", err)
	}
}

// openStore opens the trust directory (made when missing), refusing one
// on the card itself: the card's memory must not be the card's to
// change.
func openStore(e *env, rec *Record) (*trust.Store, error) {
	st, err := trust.Open(e.trustDir, true)
	if err != nil {
		return nil, err
	}
	var a, b unix.Stat_t
	if unix.Stat(st.Dir, &a) == nil && unix.Stat(rec.CardMount, &b) == nil && a.Dev == b.Dev {
		return nil, fmt.Errorf("%w: TRUST_DIR %s is on the card; it must be a host directory (the default is %s)", trust.ErrStore, e.trustDir, trust.DefaultDir)
	}
	return st, nil
}
