package rtnl

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// MAC is an Ethernet address.
type MAC [6]byte

// ParseMAC reads "02:00:5e:00:53:01" (colons or dashes).
func ParseMAC(s string) (MAC, error) {
	var m MAC
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == '-' })
	if len(parts) != 6 {
		return m, fmt.Errorf("%q is not a MAC address (six hex bytes such as 02:00:5e:00:53:01)", s)
	}
	for i, p := range parts {
		var v int
		if len(p) < 1 || len(p) > 2 {
			return m, fmt.Errorf("%q is not a MAC address (six hex bytes such as 02:00:5e:00:53:01)", s)
		}
		for _, c := range p {
			d := strings.IndexRune("0123456789abcdef", c|0x20)
			if d < 0 {
				return m, fmt.Errorf("%q is not a MAC address (six hex bytes such as 02:00:5e:00:53:01)", s)
			}
			v = v*16 + d
		}
		m[i] = byte(v)
	}
	return m, nil
}

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// Multicast reports the group bit (such an address cannot be an
// interface's own).
func (m MAC) Multicast() bool { return m[0]&1 == 1 }

// Zero reports 00:00:00:00:00:00.
func (m MAC) Zero() bool { return m == MAC{} }

// Link is one network interface as the kernel reports it.
type Link struct {
	Index  int
	Name   string
	Kind   string // "veth", "bridge", "vlan", ... ("" for physical devices and lo)
	Up     bool   // IFF_UP
	MAC    MAC
	Master int // index of the bridge it is enslaved to, 0 for none
	Parent int // IFLA_LINK (a VLAN's parent, a veth's peer index)
	VlanID int
}

// MaxNameLen is the longest interface name the kernel accepts (IFNAMSIZ-1).
const MaxNameLen = unix.IFNAMSIZ - 1

// vethInfoPeer is VETH_INFO_PEER (linux/veth.h).
const vethInfoPeer = 1

// ErrNotFound is returned when no link has the name asked for.
var ErrNotFound = errors.New("no such network interface")

func parseLink(p []byte) (Link, bool) {
	if len(p) < unix.SizeofIfInfomsg {
		return Link{}, false
	}
	l := Link{Index: int(int32(ne.Uint32(p[4:])))}
	l.Up = ne.Uint32(p[8:])&unix.IFF_UP != 0
	for _, a := range parseAttrs(p[unix.SizeofIfInfomsg:]) {
		switch a.typ {
		case unix.IFLA_IFNAME:
			l.Name = strings.TrimRight(string(a.data), "\x00")
		case unix.IFLA_ADDRESS:
			if len(a.data) == 6 {
				copy(l.MAC[:], a.data)
			}
		case unix.IFLA_MASTER:
			if len(a.data) >= 4 {
				l.Master = int(ne.Uint32(a.data))
			}
		case unix.IFLA_LINK:
			if len(a.data) >= 4 {
				l.Parent = int(ne.Uint32(a.data))
			}
		case unix.IFLA_LINKINFO:
			for _, i := range parseAttrs(a.data) {
				switch i.typ {
				case unix.IFLA_INFO_KIND:
					l.Kind = strings.TrimRight(string(i.data), "\x00")
				case unix.IFLA_INFO_DATA:
					for _, d := range parseAttrs(i.data) {
						if d.typ == unix.IFLA_VLAN_ID && len(d.data) >= 2 {
							l.VlanID = int(ne.Uint16(d.data))
						}
					}
				}
			}
		}
	}
	return l, true
}

// Links lists every link of the namespace.
func (c *Conn) Links() ([]Link, error) {
	ps, err := c.request("list interfaces", unix.RTM_GETLINK, unix.NLM_F_DUMP, ifinfo(0, 0, 0))
	if err != nil {
		return nil, err
	}
	var out []Link
	for _, p := range ps {
		if l, ok := parseLink(p); ok {
			out = append(out, l)
		}
	}
	return out, nil
}

// LinkByName returns the link called name (ErrNotFound when none).
func (c *Conn) LinkByName(name string) (Link, error) {
	if name == "" || len(name) > MaxNameLen {
		return Link{}, fmt.Errorf("interface %q: %w", name, ErrNotFound)
	}
	var a attrs
	a.str(unix.IFLA_IFNAME, name)
	ps, err := c.request("look up interface "+name, unix.RTM_GETLINK, 0, append(ifinfo(0, 0, 0), a.b...))
	if errors.Is(err, unix.ENODEV) {
		return Link{}, fmt.Errorf("interface %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Link{}, err
	}
	for _, p := range ps {
		if l, ok := parseLink(p); ok && l.Name == name {
			return l, nil
		}
	}
	return Link{}, fmt.Errorf("interface %s: %w", name, ErrNotFound)
}

// Veth describes a veth pair to create: Name here, Peer in the namespace
// open as PeerNS (a file descriptor; -1 = this namespace).
type Veth struct {
	Name    string
	MAC     *MAC // the local end's address; nil = the kernel's
	Peer    string
	PeerMAC *MAC // nil = the kernel's
	PeerNS  int
}

// AddVeth creates a veth pair (fails with EEXIST when a name is taken).
func (c *Conn) AddVeth(v Veth) error {
	var peer attrs
	peer.b = ifinfo(0, 0, 0)
	peer.str(unix.IFLA_IFNAME, v.Peer)
	if v.PeerMAC != nil {
		peer.add(unix.IFLA_ADDRESS, v.PeerMAC[:])
	}
	if v.PeerNS >= 0 {
		peer.u32(unix.IFLA_NET_NS_FD, uint32(v.PeerNS))
	}
	var data attrs
	data.nest(vethInfoPeer, &peer)
	var info attrs
	info.str(unix.IFLA_INFO_KIND, "veth")
	info.nest(unix.IFLA_INFO_DATA, &data)
	var a attrs
	a.str(unix.IFLA_IFNAME, v.Name)
	if v.MAC != nil {
		a.add(unix.IFLA_ADDRESS, v.MAC[:])
	}
	a.nest(unix.IFLA_LINKINFO, &info)
	_, err := c.request(fmt.Sprintf("create veth pair %s/%s", v.Name, v.Peer), unix.RTM_NEWLINK,
		unix.NLM_F_CREATE|unix.NLM_F_EXCL, append(ifinfo(0, 0, 0), a.b...))
	return err
}

// AddVlan creates VLAN id on the link with index parent, called name.
func (c *Conn) AddVlan(name string, parent, id int) error {
	var data attrs
	data.u16(unix.IFLA_VLAN_ID, uint16(id))
	var info attrs
	info.str(unix.IFLA_INFO_KIND, "vlan")
	info.nest(unix.IFLA_INFO_DATA, &data)
	var a attrs
	a.str(unix.IFLA_IFNAME, name)
	a.u32(unix.IFLA_LINK, uint32(parent))
	a.nest(unix.IFLA_LINKINFO, &info)
	_, err := c.request(fmt.Sprintf("create VLAN %d interface %s", id, name), unix.RTM_NEWLINK,
		unix.NLM_F_CREATE|unix.NLM_F_EXCL, append(ifinfo(0, 0, 0), a.b...))
	return err
}

// SetMaster enslaves link index to the bridge with index master.
func (c *Conn) SetMaster(index, master int) error {
	var a attrs
	a.u32(unix.IFLA_MASTER, uint32(master))
	_, err := c.request(fmt.Sprintf("attach interface %d to bridge %d", index, master), unix.RTM_NEWLINK, 0,
		append(ifinfo(int32(index), 0, 0), a.b...))
	return err
}

// SetUp brings link index up (or down).
func (c *Conn) SetUp(index int, up bool) error {
	var flags uint32
	if up {
		flags = unix.IFF_UP
	}
	_, err := c.request(fmt.Sprintf("set interface %d up=%v", index, up), unix.RTM_NEWLINK, 0, ifinfo(int32(index), flags, unix.IFF_UP))
	return err
}

// Delete removes the link called name (with a veth, its peer goes too).
// A link that does not exist is ErrNotFound.
func (c *Conn) Delete(name string) error {
	var a attrs
	a.str(unix.IFLA_IFNAME, name)
	_, err := c.request("delete interface "+name, unix.RTM_DELLINK, 0, append(ifinfo(0, 0, 0), a.b...))
	if errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("interface %s: %w", name, ErrNotFound)
	}
	return err
}
