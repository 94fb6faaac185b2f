package app

import (
	"github.com/ovpkg/ovpkg/internal/cli"

	"github.com/ovpkg/ovpkg/pkgmgr"
)

func installCommand() *cli.Command {
	return &cli.Command{
		Name:      "install",
		Usage:     "install packages (names or ./file.deb, .ipk, .apk) onto the card",
		UsageText: "ovpkg install [--yes] [--pm apt|opkg|apk] PKG|./FILE.deb|./FILE.ipk|./FILE.apk...",
		Description: `Mounts the card if it is not (as ovmount does), works out what the install brings in
(apt-get --print-uris: one resolver run, nothing downloaded), shows it (packages, download
size, space needed on the card) and asks once; then runs the package manager in a transaction
(a new layer on the card, kept only when it succeeds) through the live overlays: every file it
writes, its database and /etc changes included, lands on the card and shows in place at once.
Archives are downloaded into ARCHIVE_DIR (default: ovpkg/cache/archives on the card, outside
every layer) and deleted afterwards unless KEEP_ARCHIVES=yes. Before dpkg runs, ovpkg checks
the downloaded archives and the card's free space; while the package manager runs, everything
of the base root outside the overlaid directories is read-only to it, so a package or script
that writes there fails and the transaction is undone.

With --yes nothing is asked and apt resolves only once (the plan is checked at the gate before
dpkg). Without --yes and without a terminal to ask on, ovpkg refuses before downloading
anything.

The package manager runs in its own PID namespace that dies with ovpkg; Ctrl-C or SIGTERM
stops it and the transaction is undone. Maintainer scripts are kept from starting services (a
temporary policy-rc.d), and ovpkg names the ones it held back.

With opkg the plan is opkg --noaction install; with apk (OpenWrt 25.12+) it is apk add
--simulate, and apk's own trust applies: a package not signed by a key in /etc/apk/keys is
refused before anything is written unless /etc/apk/config says allow-untrusted (ovpkg never
adds --allow-untrusted).

Exit status: 0 installed (or nothing to do), 1 failure (unknown package, corrupt file, no
space, not confirmed, interrupted...), 2 usage.`,
		Flags: pkgFlags(append([]cli.Flag{yesFlag}, testInstallFlags...)...),
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			if len(args) == 0 {
				return usagef("install: name at least one package or package file")
			}
			if err := checkArgs("install", args); err != nil {
				return err
			}
			return change(c, pkgmgr.OpInstall, args)
		},
	}
}
