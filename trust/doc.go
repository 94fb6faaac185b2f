// Package trust is the host's memory of card images, which gates setuid,
// setgid and file capabilities on a card (issue 9, item 2).
//
// Whoever has a card in hand can edit its ext2 while it is not mounted
// (debugfs -w, another machine) and add a setuid-root program that keeps
// the card's UUID. So the host remembers, at each clean eject and after
// mkoverlay, what the card was: the whole superblock (write time, mount
// count, lifetime KiB written, free counts, UUID; HMAC-SHA256 of its 1024
// bytes), ovpkg's metadata on it (FORMAT, stack, txn, history, trial,
// boot, base/sums and the names in layers/; HMAC-SHA256) and its
// privileged files (setuid, setgid, file capabilities: names, owners,
// modes, contents; HMAC-SHA256), with a key only root can read. The last
// is what catches an inode edited in place (debugfs "sif FILE mode
// 04755" leaves the superblock byte for byte as it was). A card whose
// fingerprint differs (changed elsewhere) or that was never seen is
// mounted by mountset with its overlays nosuid (which also disables file
// capabilities on exec) until the user approves it with ovmount --trust.
//
// The memory and the key live in the trust directory (TRUST_DIR, default
// /var/lib/ovpkg): never on the card, root-owned, 0700, checked with
// internal/trustpath; the key (card-key, 32 bytes from crypto/rand, 0600)
// is created on first use; each card is one file card-<UUID> (JSON, 0600,
// replaced atomically).
//
// It does not mount anything or decide mount flags (mountset does), and
// it does not resolve card paths in general (internal/beneath); Meta reads
// its few files component by component with O_NOFOLLOW on the card's own
// filesystem.
package trust
