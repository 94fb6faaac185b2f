// Package kmod loads Linux kernel modules the way modprobe does, with no
// modprobe: it reads the module directory of the running kernel
// (/lib/modules/$(uname -r) on the root being booted), resolves a name or
// an alias (modules.alias, e.g. "fs-ext2" -> ext4) to a module file, loads
// its dependencies first (modules.dep, in the order depmod wrote them,
// deepest first) and each file with finit_module(2). Compressed modules
// (.ko.xz, .ko.zst, .ko.gz) are handed to the kernel to decompress
// (MODULE_INIT_COMPRESSED_FILE, Linux 5.17 and later).
//
// A module already in the kernel (built in: modules.builtin; loaded:
// /sys/module/<name>) is not loaded again. Where a distribution's package
// left no modules.dep (depmod runs in its maintainer script), the
// dependencies and aliases are read from the modules' own .modinfo
// strings instead (depends=, alias=); Generate writes a modules.dep from
// them for test roots.
//
// It owns finding and loading. It does NOT unload modules, pass module
// parameters, check signatures (the kernel does), or decide which modules
// are needed (init-overlay does). No dependency: the Go module loaders
// (u-root's kmodule, pault.ag/go/modprobe, pmorjan/kmod) each link xz and
// zstd decompressors, several hundred KB on mipsle, for a job the kernel
// does itself.
package kmod
