// Package debian is the real-archive corpus (issue 8, item 1): tests that
// install packages from Debian's archive (the apt sources of the machine
// the tests run on) with `ovpkg install -y` onto a fresh card mounted
// over the host's real /usr, /etc and /var, inside a private mount
// namespace, and check each package's peculiarity (epochs, a system user
// and a service, debconf, dpkg-divert, update-alternatives, triggers, a
// large install), remove, reinstall and rollback, eject, the card's used
// space, and that the host's package database and users are untouched.
//
// The archives are cached between runs in the test cache
// (nstest.CacheDir "corpus/<package>"). Without the archive the tests
// skip; under CI they fail. It has tests only.
package debian
