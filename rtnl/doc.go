// Package rtnl is a small rtnetlink client over x/sys/unix for exactly
// what subhost cables need: look links up, create veth pairs with the peer
// placed in another network namespace and given a fixed MAC address,
// create VLAN links, enslave a link to a bridge, bring links up, and
// delete links. Every request asks for an acknowledgement and extended
// acks, so a refused request comes back as an *Error that keeps the errno
// (errors.Is(err, unix.EEXIST)) and the kernel's own message.
//
// It exists instead of vishvananda/netlink or jsimonetti/rtnetlink for
// binary size: see docs/dependencies.md for the measurement.
//
// A Conn is bound to the network namespace it was opened in (Dial: the
// calling thread's; DialNS: a namespace file such as /run/netns/NAME).
// rtnl does not create or delete namespaces, and sets no addresses or
// routes.
package rtnl
