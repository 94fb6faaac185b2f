// Package merge merges text files three ways: the version the base root had
// when the card copied a file ("old"), the base's version now ("new"), and
// the card's version ("card"). It is what `ovpkg rebase` uses when the base
// changed under a card that shadows one of its files.
//
// Three mergers, chosen by the file's meaning:
//
//   - Status: dpkg/opkg status databases, merged by package stanza, keyed by
//     Package (and Architecture for dpkg multi-arch). A stanza changed on one
//     side only takes that side. When both sides changed the same stanza
//     differently the card's stanza wins: the card's files shadow the base's
//     at the same paths, so the card's record is the one that describes what
//     the merged view really holds. Such stanzas are listed in Result.Notes,
//     never silently.
//   - Entries: passwd, group, shadow, gshadow, merged by entry keyed by the
//     first field (the name). Additions from both sides are kept; an entry
//     both sides changed differently, or two different names claiming the
//     same uid (passwd) or gid (group), is a Conflict.
//   - Lines: any other text file (conffiles), a diff3-style line merge. Hunks
//     changed on one side take that side; hunks changed identically on both
//     sides are taken once; hunks both sides changed differently are
//     Conflicts, listed with their line ranges, and no merged text is
//     offered for them.
//
// A Result with Conflicts must not be written: callers refuse and print the
// list. Everything here is pure (bytes in, bytes out) and needs no root.
//
// It does NOT read or write files, decide which files to merge, or know
// where the "old" copy comes from (package txn records it at commit time).
//
// The line diff is a small Myers O(ND) implementation in this package rather
// than a library: the Go diff libraries at hand either lack diff3 or pull in
// more code than the whole merger, and the suite must stay small on mipsle.
package merge
