// Package config reads and writes ovpkg's configuration file, by default
// /etc/ovpkg.conf (overridden by --config or $OVPKG_CONFIG).
//
// The file is the seed's: shell-style KEY=VALUE lines. config owns parsing,
// the atomic rewrite that keeps every line it does not own, and the trust
// checks (root-owned regular file, not group/world-writable, not a symlink)
// that ovmount needs before it mounts anything over /etc.
//
// It does not interpret the values beyond syntax: what an image is, which
// directories are overlaid, and so on belong to image, card and mountset.
package config
