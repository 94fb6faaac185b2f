package subhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/mount"
	"github.com/ovpkg/ovpkg/rtnl"
)

// NetnsDir is where named network namespaces live (as for ip netns).
const NetnsDir = "/run/netns"

// nameNetns bind-mounts the network namespace of pid at
// /run/netns/NAME, as `ip netns add` would have made it: /run/netns is
// made a shared mount first, so that unmounting the name later reaches
// every mount namespace copied meanwhile.
func nameNetns(name string, pid int) (string, error) {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return "", err
	}
	if err := unix.Mount("", NetnsDir, "", unix.MS_SHARED|unix.MS_REC, ""); errors.Is(err, unix.EINVAL) {
		if err := unix.Mount(NetnsDir, NetnsDir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return "", fmt.Errorf("bind-mounting %s on itself: %w", NetnsDir, err)
		}
		if err := unix.Mount("", NetnsDir, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
			return "", fmt.Errorf("making %s shared: %w", NetnsDir, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("making %s shared: %w", NetnsDir, err)
	}
	p := filepath.Join(NetnsDir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("network namespace %s already exists (ip netns delete %s, or ovpkg subhost stop %s)", p, name, name)
		}
		return "", err
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/%d/ns/net", pid), p, "", unix.MS_BIND, ""); err != nil {
		os.Remove(p)
		return "", fmt.Errorf("naming network namespace %s: %w", p, err)
	}
	return p, nil
}

// removeNetns unmounts and removes a named network namespace (missing
// is fine).
func removeNetns(p string) error {
	if p == "" {
		return nil
	}
	tab, _ := mount.Self()
	if tab.Lookup(p) != nil {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmounting network namespace %s: %w", p, err)
		}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	return nil
}

// makeCables creates every cable of cfg: the veth pair with the subhost
// end in the namespace open as nsFD, VLANs on both ends, the host end
// on its bridge (or just up), the subhost's lo up. made is filled as it
// goes, so that a failure leaves a list to undo.
func makeCables(cfg *Config, nsPath string, made *[]CableState) error {
	host, err := rtnl.Dial()
	if err != nil {
		return err
	}
	defer host.Close()
	sub, err := rtnl.DialNS(nsPath)
	if err != nil {
		return err
	}
	defer sub.Close()
	ns, err := os.Open(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	if lo, err := sub.LinkByName("lo"); err == nil {
		if err := sub.SetUp(lo.Index, true); err != nil {
			return err
		}
	}
	attach := func(l rtnl.Link, bridge string) error {
		if bridge != "" {
			br, err := host.LinkByName(bridge)
			if err != nil {
				return fmt.Errorf("bridge %s for %s: %w", bridge, l.Name, err)
			}
			if br.Kind != "bridge" {
				return fmt.Errorf("%s for %s is a %q interface, not a bridge", bridge, l.Name, br.Kind)
			}
			if err := host.SetMaster(l.Index, br.Index); err != nil {
				return err
			}
		}
		return host.SetUp(l.Index, true)
	}
	for _, c := range cfg.Cables {
		cs := CableState{Host: c.Host(cfg.Name), Sub: c.Sub(), Bridge: c.Bridge}
		if c.MAC != nil {
			cs.MAC = c.MAC.String()
		}
		if err := host.AddVeth(rtnl.Veth{Name: cs.Host, Peer: cs.Sub, PeerMAC: c.MAC, PeerNS: int(ns.Fd())}); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("cable %d: interface %s already exists (another subhost called %s, or one left by a crash: ovpkg subhost stop %s): %w", c.Index, cs.Host, cfg.Name, cfg.Name, err)
			}
			return fmt.Errorf("cable %d: %w", c.Index, err)
		}
		*made = append(*made, cs)
		hl, err := host.LinkByName(cs.Host)
		if err != nil {
			return err
		}
		if err := attach(hl, c.Bridge); err != nil {
			return fmt.Errorf("cable %d: %w", c.Index, err)
		}
		sl, err := sub.LinkByName(cs.Sub)
		if err != nil {
			return err
		}
		for _, v := range c.Vlans {
			hv := fmt.Sprintf("%s.%d", cs.Host, v.ID)
			if err := host.AddVlan(hv, hl.Index, v.ID); err != nil {
				return fmt.Errorf("cable %d: %w", c.Index, err)
			}
			(*made)[len(*made)-1].Vlans = append((*made)[len(*made)-1].Vlans, hv)
			hvl, err := host.LinkByName(hv)
			if err != nil {
				return err
			}
			if err := attach(hvl, v.Bridge); err != nil {
				return fmt.Errorf("cable %d VLAN %d: %w", c.Index, v.ID, err)
			}
			if err := sub.AddVlan(fmt.Sprintf("%s.%d", cs.Sub, v.ID), sl.Index, v.ID); err != nil {
				return fmt.Errorf("cable %d: %w", c.Index, err)
			}
		}
	}
	return nil
}

// removeCables deletes the host ends (their peers and VLANs go with
// them); interfaces already gone are fine.
func removeCables(cs []CableState) error {
	if len(cs) == 0 {
		return nil
	}
	host, err := rtnl.Dial()
	if err != nil {
		return err
	}
	defer host.Close()
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		for _, v := range cs[i].Vlans {
			if err := host.Delete(v); err != nil && !errors.Is(err, rtnl.ErrNotFound) {
				errs = append(errs, err)
			}
		}
		if err := host.Delete(cs[i].Host); err != nil && !errors.Is(err, rtnl.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
