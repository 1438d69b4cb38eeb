package netlab

import (
	"net"
	"time"

	"golang.org/x/sys/unix"

	"roam/tap"
)

// InNetns runs fn on an OS thread switched into the named namespace
// (tap.InNetns): sockets fn opens stay in that namespace for their life.
func InNetns(name string, fn func() error) error { return tap.InNetns(name, fn) }

// InNS runs fn in the Lab's namespace short.
func (w *Lab) InNS(short string, fn func() error) error { return InNetns(w.NS(short), fn) }

// ListenUDP opens a UDP socket bound to addr in namespace short.
func (w *Lab) ListenUDP(short, addr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := w.InNS(short, func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", a)
		return err
	})
	if err == nil {
		bigBuffers(c)
	}
	return c, err
}

// DialUDP opens a UDP socket in namespace short connected to raddr.
func (w *Lab) DialUDP(short, raddr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := w.InNS(short, func() error {
		a, err := net.ResolveUDPAddr("udp4", raddr)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", nil, a)
		return err
	})
	if err == nil {
		bigBuffers(c)
	}
	return c, err
}

// bigBuffers gives a UDP socket 8 MB buffers (beyond rmem_max: we are
// root), so that a receiver that the scheduler leaves aside for a while on
// a busy machine loses nothing: at 2000 datagrams/s, the default buffer
// holds about 45 ms of a stream.
func bigBuffers(c *net.UDPConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20)
	})
}

// ListenTCP opens a TCP listener on addr in namespace short.
func (w *Lab) ListenTCP(short, addr string) (*net.TCPListener, error) {
	var l *net.TCPListener
	err := w.InNS(short, func() error {
		a, err := net.ResolveTCPAddr("tcp4", addr)
		if err != nil {
			return err
		}
		l, err = net.ListenTCP("tcp4", a)
		return err
	})
	return l, err
}

// DialTCP connects from namespace short to raddr within timeout.
func (w *Lab) DialTCP(short, raddr string, timeout time.Duration) (*net.TCPConn, error) {
	var c *net.TCPConn
	err := w.InNS(short, func() error {
		conn, err := net.DialTimeout("tcp4", raddr, timeout)
		if err != nil {
			return err
		}
		c = conn.(*net.TCPConn)
		return nil
	})
	return c, err
}
