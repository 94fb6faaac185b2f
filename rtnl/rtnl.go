package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

var ne = binary.NativeEndian

// Conn is a NETLINK_ROUTE socket.
type Conn struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	pid uint32
}

// Error is a request the kernel refused.
type Error struct {
	Op     string // what was asked, e.g. "create veth s10/eth0"
	Kernel string // the kernel's extended-ack message, if any
	Err    error  // the errno
}

func (e *Error) Error() string {
	s := e.Op + ": " + e.Err.Error()
	if e.Kernel != "" {
		s += " (kernel: " + e.Kernel + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Dial opens a socket in the calling thread's network namespace.
func Dial() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink socket: %w", err)
	}
	c := &Conn{fd: fd}
	if err := c.init(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

func (c *Conn) init() error {
	_ = unix.SetsockoptInt(c.fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(c.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := unix.Bind(c.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("rtnetlink bind: %w", err)
	}
	sa, err := unix.Getsockname(c.fd)
	if err != nil {
		return fmt.Errorf("rtnetlink getsockname: %w", err)
	}
	if nl, ok := sa.(*unix.SockaddrNetlink); ok {
		c.pid = nl.Pid
	}
	return nil
}

// DialNS opens a socket in the network namespace the file nsPath refers
// to (/run/netns/NAME, /proc/PID/ns/net). The socket stays in that
// namespace; the calling goroutine's thread is switched there only for
// the socket(2) call.
func DialNS(nsPath string) (*Conn, error) {
	var c *Conn
	err := InNS(nsPath, func() error {
		var err error
		c, err = Dial()
		return err
	})
	return c, err
}

// InNS runs fn on a thread that is in the network namespace nsPath, then
// puts the thread back. When the thread cannot be put back it is not
// reused (the goroutine's lock is kept, so Go ends the thread).
func InNS(nsPath string, fn func() error) error {
	target, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", nsPath, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(ferr, fmt.Errorf("returning from network namespace %s: %w", nsPath, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Close closes the socket.
func (c *Conn) Close() error { return unix.Close(c.fd) }

// attribute building

type attrs struct{ b []byte }

func align(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }

func (a *attrs) add(typ uint16, data []byte) {
	l := unix.SizeofRtAttr + len(data)
	h := make([]byte, unix.SizeofRtAttr)
	ne.PutUint16(h[0:], uint16(l))
	ne.PutUint16(h[2:], typ)
	a.b = append(a.b, h...)
	a.b = append(a.b, data...)
	a.b = append(a.b, make([]byte, align(l)-l)...)
}

func (a *attrs) str(typ uint16, s string) { a.add(typ, append([]byte(s), 0)) }

func (a *attrs) u32(typ uint16, v uint32) {
	b := make([]byte, 4)
	ne.PutUint32(b, v)
	a.add(typ, b)
}

func (a *attrs) u16(typ uint16, v uint16) {
	b := make([]byte, 2)
	ne.PutUint16(b, v)
	a.add(typ, b)
}

func (a *attrs) nest(typ uint16, inner *attrs) { a.add(typ|unix.NLA_F_NESTED, inner.b) }

// ifinfomsg
func ifinfo(index int32, flags, change uint32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	ne.PutUint32(b[4:], uint32(index))
	ne.PutUint32(b[8:], flags)
	ne.PutUint32(b[12:], change)
	return b
}

// request sends one message and collects the replies up to the ack (or
// NLMSG_DONE for dumps). It returns the payloads of the non-control
// messages.
func (c *Conn) request(op string, typ uint16, flags uint16, body []byte) ([][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	seq := c.seq
	l := unix.NLMSG_HDRLEN + len(body)
	msg := make([]byte, l)
	ne.PutUint32(msg[0:], uint32(l))
	ne.PutUint16(msg[4:], typ)
	ne.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(msg[8:], seq)
	copy(msg[unix.NLMSG_HDRLEN:], body)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, &Error{Op: op, Err: err}
	}
	var out [][]byte
	buf := make([]byte, 64*1024)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &Error{Op: op, Err: err}
		}
		b := buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			ml := int(ne.Uint32(b[0:]))
			mt := ne.Uint16(b[4:])
			mf := ne.Uint16(b[6:])
			ms := ne.Uint32(b[8:])
			if ml < unix.NLMSG_HDRLEN || ml > len(b) {
				return nil, &Error{Op: op, Err: fmt.Errorf("malformed netlink reply")}
			}
			payload := b[unix.NLMSG_HDRLEN:ml]
			next := b[min(align(ml), len(b)):]
			if ms != seq {
				b = next
				continue
			}
			switch mt {
			case unix.NLMSG_ERROR:
				if len(payload) < 4 {
					return nil, &Error{Op: op, Err: fmt.Errorf("short netlink error")}
				}
				code := int32(ne.Uint32(payload))
				if code == 0 {
					return out, nil
				}
				return nil, &Error{Op: op, Err: unix.Errno(-code), Kernel: extAck(payload, mf)}
			case unix.NLMSG_DONE:
				return out, nil
			default:
				out = append(out, append([]byte(nil), payload...))
			}
			b = next
		}
	}
}

// extAck finds NLMSGERR_ATTR_MSG in an error message's payload (after the
// errno and the echoed request header, with NETLINK_CAP_ACK).
func extAck(p []byte, flags uint16) string {
	if flags&unix.NLM_F_ACK_TLVS == 0 || len(p) < 4+unix.NLMSG_HDRLEN {
		return ""
	}
	off := 4 + unix.NLMSG_HDRLEN
	if flags&unix.NLM_F_CAPPED == 0 {
		ol := int(ne.Uint32(p[4:]))
		off = 4 + align(ol)
	}
	for _, a := range parseAttrs(p[min(off, len(p)):]) {
		if a.typ == unix.NLMSGERR_ATTR_MSG {
			return strings.TrimRight(string(a.data), "\x00")
		}
	}
	return ""
}

type attr struct {
	typ  uint16
	data []byte
}

func parseAttrs(b []byte) []attr {
	var out []attr
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b[0:]))
		t := ne.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		out = append(out, attr{t, b[unix.SizeofRtAttr:l]})
		b = b[min(align(l), len(b)):]
	}
	return out
}
