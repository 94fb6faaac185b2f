// Package subhost runs overlay-boot's "subhosts": services in their own
// network, mount, PID, IPC, UTS, time and cgroup namespaces over an
// overlay of the host's root, defined by an overlay-boot config file
// (docs/subhost.md).
//
// It owns the config file format (LoadConfig, with `!` helpers), the
// checks made before anything is touched (Check), the supervisor that
// makes the subhost and stays with it (Supervise: cgroup, named network
// namespace, veth cables through package rtnl, PID 1), PID 1 itself
// (InitMain: mounts, pivot_root, services, reaping, graceful stop),
// entering (Enter), stopping and cleaning up after a crash (Stop), and the
// records in RUN_DIR/subhosts (NAME.json, NAME.lock; List).
//
// It does not mount the card (mountset) or decide its layers (txn): for
// --card it takes the card's overlays as the mount record describes them.
package subhost
