# ovpkg suite. Every command name lands in ./bin as a link to one static
# multi-call binary.
GO        ?= go
PREFIX    ?= /usr/local
DESTDIR   ?=
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/ovpkg/ovpkg/app.Version=$(VERSION)
GOFLAGS_B := -trimpath -buildvcs=false
# The tests run a build with the test hooks (fault points, test verbs:
# internal/faults); the product (bin/, dist/) never has them.
TESTTAGS  := ovpkg_testhooks
TOOLS     := mkoverlay ovmount uovmount eject overlay-boot overlay-go overlay-stop init-overlay
# The names packages and `make install` link unconditionally (eject only
# where the system has none).
LINKS     := $(filter-out eject,$(TOOLS))
TESTTIMEOUT ?= 60m
# Programs the tests use to check results independently.
TESTPROGS := e2fsck:e2fsprogs dumpe2fs:e2fsprogs mke2fs:e2fsprogs sfdisk:fdisk blkid:util-linux losetup:mount \
             unshare:util-linux dpkg-deb:dpkg rsync:rsync fuser:psmisc time:time python3:python3 \
             systemd-analyze:systemd make:make git:git \
             qemu-mipsel-static:qemu-user-static ip:iproute2 ping:iputils-ping service:init-system-helpers mkfifo:coreutils ps:procps \
             debugfs:e2fsprogs qemu-system-x86_64:qemu-system-x86
# Debian packages ../shared/pm-src/build.sh needs to build the real opkg
# and apk (internal/owrttest builds them once per machine with NO_APT=1,
# so that no test installs anything).
PMBUILDDEBS := build-essential cmake pkg-config libjson-c-dev meson ninja-build libssl-dev zlib1g-dev \
             libzstd-dev lua5.3 gzip file

# Packages (make deb, ipk, apk): version from the commit count, so that
# every later commit orders higher for dpkg, opkg and apk alike.
PKG_VERSION ?= 0.0.$(shell git rev-list --count HEAD 2>/dev/null || echo 0)
SYSCONFDIR    ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR   ?= $(PREFIX)/share/bash-completion/completions
# apk-tools 3 for `make apk`: the one `make test` builds from
# ../shared/pm-src into the test cache, else one on PATH.
APK ?= $(firstword $(wildcard $(or $(OVPKG_TEST_CACHE),/var/cache/ovpkg-test)/pm/pm-*/bin/apk) $(shell command -v apk 2>/dev/null))

.PHONY: all build build-test demo test test-deps vet bench install cross man completion deb ipk apk clean

all: build

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_B) -ldflags '$(LDFLAGS)' -o bin/ovpkg ./cmd/ovpkg
	@for t in $(TOOLS); do ln -sf ovpkg bin/$$t; done
	@ls -l bin/ovpkg | awk '{print "bin/ovpkg: " $$5 " bytes"}'

# The binary the tests run: the product plus the test hooks.
build-test:
	@mkdir -p bin-test
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -tags '$(TESTTAGS)' -ldflags '$(LDFLAGS)' -o bin-test/ovpkg ./cmd/ovpkg
	@for t in $(TOOLS); do ln -sf ovpkg bin-test/$$t; done

# The whole seed workflow on an embedded default, inside a private mount
# namespace, in a scratch directory: nothing on the host is mounted.
demo: build
	unshare --mount --propagation private -- bash scripts/demo.sh

# Install what the tests use to verify, with apt-get, only when missing.
# Without recommends: qemu-user-static recommends binfmt-support, which
# would register qemu with the host's binfmt_misc (tests run qemu-*-static
# explicitly and never change binfmt).
test-deps:
	@missing=""; for p in $(TESTPROGS); do \
	  command -v $${p%%:*} >/dev/null 2>&1 || missing="$$missing $${p##*:}"; done; \
	for p in $(PMBUILDDEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "not root: install$$missing by hand"; fi; \
	fi

# vet also on the 32-bit and big-endian targets the suite ships for
# (Stat_t fields are uint32 there), so the cross builds never break.
vet:
	$(GO) vet ./...
	$(GO) vet -tags '$(TESTTAGS)' ./...
	GOARCH=mips GOMIPS=softfloat $(GO) vet ./...
	GOARCH=arm GOARM=5 $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }

test: test-deps vet build build-test
	CGO_ENABLED=0 $(GO) build ./...
	OVPKG_TEST_BIN=$(CURDIR)/bin-test OVPKG_PRODUCT_BIN=$(CURDIR)/bin $(GO) test -tags '$(TESTTAGS)' -count=1 -timeout $(TESTTIMEOUT) ./...

# Benchmarks: each prints ratios against its named baseline, run in the
# same process. Figures are recorded in docs/benchmarks.md.
bench: test-deps build build-test
	OVPKG_TEST_BIN=$(CURDIR)/bin-test $(GO) test -tags '$(TESTTAGS)' -run '^$$' -bench . -benchtime 3x -count 1 -timeout 60m ./bench/

# Section-8 man pages generated from the commands' own help.
man:
	$(GO) run ./internal/mangen man

# The bash completion script, generated from the command tree (outside the
# product binary, like the man pages).
completion:
	$(GO) run ./internal/bashcomp completion/ovpkg

# The same files as the .deb (docs/packaging.md), under PREFIX: the binary
# and its names, man pages, bash completion, the systemd unit and the
# sysvinit script that run `ovmount --boot` (enable one of them yourself).
install: build man completion
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(BASHCOMPDIR) \
	  $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSCONFDIR)/init.d
	install -m 0755 bin/ovpkg $(DESTDIR)$(PREFIX)/sbin/ovpkg
	@for t in $(LINKS); do ln -sf ovpkg $(DESTDIR)$(PREFIX)/sbin/$$t; done
	@# eject only where the system has no eject of its own (`ovpkg eject` always works).
	@other=$$(command -v eject 2>/dev/null || true); \
	if [ -z "$$other" ] || [ "$$(readlink -f $$other)" = "$$(readlink -f $(DESTDIR)$(PREFIX)/sbin/ovpkg)" ]; then \
	  ln -sf ovpkg $(DESTDIR)$(PREFIX)/sbin/eject; \
	else echo "not linking eject: $$other exists (use ovpkg eject)"; fi
	@# A man page and completion for every command-line tool (init-overlay,
	@# started by the kernel, has neither); eject's only where it is linked.
	@for m in man/*.8; do n=$${m##*/}; n=$${n%.8}; \
	  if [ $$n != eject ] || [ -L $(DESTDIR)$(PREFIX)/sbin/eject ]; then install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man8/; fi; \
	  if [ $$n != eject ] && [ $$n != ovpkg ]; then ln -sf ovpkg $(DESTDIR)$(BASHCOMPDIR)/$$n; fi; done
	install -m 0644 completion/ovpkg $(DESTDIR)$(BASHCOMPDIR)/ovpkg
	@for u in packaging/systemd/*.service; do \
	  sed 's#@SBINDIR@#$(PREFIX)/sbin#g' $$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} && chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} || exit 1; done
	@for i in packaging/sysvinit/*; do \
	  sed 's#@SBINDIR@#$(PREFIX)/sbin#g' $$i > $(DESTDIR)$(SYSCONFDIR)/init.d/$${i##*/} && chmod 0755 $(DESTDIR)$(SYSCONFDIR)/init.d/$${i##*/} || exit 1; done

# Static, stripped builds for the devices this targets; each dist/linux-<arch>
# holds exactly what `make install` would install.
CROSS := amd64: arm64: arm:5 arm:7 mipsle:softfloat mips:softfloat
cross: man
	@rm -rf dist; for t in $(CROSS); do \
	  arch=$${t%%:*}; v=$${t##*:}; name=$$arch; env=""; \
	  case $$arch in arm) env="GOARM=$$v"; name=armv$$v;; mips|mipsle) env="GOMIPS=$$v";; esac; \
	  d=dist/linux-$$name; \
	  env CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $$env $(GO) build $(GOFLAGS_B) -ldflags '$(LDFLAGS)' -o $$d/sbin/ovpkg ./cmd/ovpkg || exit 1; \
	  for tool in $(TOOLS); do ln -sf ovpkg $$d/sbin/$$tool; done; \
	  if ls man/*.8 >/dev/null 2>&1; then mkdir -p $$d/share/man/man8; cp man/*.8 $$d/share/man/man8/; fi; \
	  printf '%-22s %9d bytes\n' $$d/sbin/ovpkg $$(stat -c %s $$d/sbin/ovpkg); \
	done

# Packages of ovpkg for every architecture of `make cross`, into
# dist/packages (packaging/build.sh; docs/packaging.md).
deb: cross completion
	PKG_VERSION=$(PKG_VERSION) sh packaging/build.sh deb

ipk: cross
	PKG_VERSION=$(PKG_VERSION) sh packaging/build.sh ipk

apk: cross
	PKG_VERSION=$(PKG_VERSION) APK="$(APK)" sh packaging/build.sh apk

clean:
	rm -rf bin bin-test dist completion
