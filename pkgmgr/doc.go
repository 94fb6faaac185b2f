// Package pkgmgr drives the system's package manager (apt/dpkg on Debian
// and derivatives, opkg on OpenWrt up to 24.10, apk on OpenWrt 25.12+) on
// behalf of ovpkg, and reads its database.
//
// It owns:
//   - the Manager interface and one adapter per package manager (apt.go,
//     opkg.go, apk.go), chosen by Detect from what a root holds (a
//     manager's program and database; several is an error) or by name
//     (--pm);
//   - io.Reader parsers for RFC 822-style control data (ParseStanzas) and
//     the status databases built on it (ParseDpkgStatus, ParseOpkgStatus,
//     ParseApkInstalled), for the output of apt-get -s, dpkg-deb -c and
//     apk --simulate, and streaming readers of .ipk and .apk files;
//   - the install plan: which packages an install brings in, their
//     installed size, and every path they write (CheckPaths refuses paths
//     outside the overlaid directories, so the base root is never written);
//   - Run: the package manager in its own PID namespace whose init dies
//     with ovpkg (Pdeathsig), with SIGINT/SIGTERM forwarded, a temporary
//     policy-rc.d that keeps maintainer scripts from starting daemons, and
//     ENOSPC recognised in the package manager's output;
//   - Classify: which packages live on the card, which in the base, by
//     comparing the card's copy of the status database with the base's.
//
// It does NOT mount anything, take the ovpkg lock or know the card layout
// (package mountset does), and it never edits the package database itself:
// only the package manager writes it. Adding a manager is one new file
// implementing Manager plus one entry in the adapters table.
package pkgmgr
