package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TCPState is what TCP_REPAIR needs to recreate an established connection
// in another namespace (the technique of CRIU's libsoccr): the addresses,
// both sequence numbers, the queued bytes, the negotiated options, the
// timestamp clock and the windows.
type TCPState struct {
	Local     string `json:"local"`  // ip:port before the move
	Remote    string `json:"remote"` // ip:port of the peer
	SndSeq    uint32 `json:"snd_seq"`
	RcvSeq    uint32 `json:"rcv_seq"`
	SndQueue  []byte `json:"snd_queue"`
	RcvQueue  []byte `json:"rcv_queue"`
	MSS       uint32 `json:"mss"`
	Options   uint8  `json:"options"` // tcpi_options: 1 timestamps, 2 SACK, 4 window scaling
	SndWscale uint8  `json:"snd_wscale"`
	RcvWscale uint8  `json:"rcv_wscale"`
	Timestamp uint32 `json:"timestamp"`
	Window    []byte `json:"window"` // struct tcp_repair_window as the kernel gave it
}

const (
	tcpiOptTimestamps = 1
	tcpiOptSACK       = 2
	tcpiOptWscale     = 4

	tcpoptMaxseg    = 2
	tcpoptWindow    = 3
	tcpoptSACKPerm  = 4
	tcpoptTimestamp = 8

	tcpRecvQueue = 1
	tcpSendQueue = 2
)

func getsockoptRaw(fd, level, opt int, buf []byte) ([]byte, error) {
	n := uint32(len(buf))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return nil, errno
	}
	return buf[:n], nil
}

// peekQueue reads the whole of one queue of a socket in repair mode.
func peekQueue(fd, queue int, size int) ([]byte, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, queue); err != nil {
		return nil, fmt.Errorf("TCP_REPAIR_QUEUE %d: %w", queue, err)
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	n, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return nil, fmt.Errorf("peek queue %d (%d bytes): %w", queue, size, err)
	}
	return buf[:n], nil
}

// DumpTCP puts the connection's socket into repair mode (it stays there:
// closing it then sends nothing to the peer) and returns its state.
func DumpTCP(c *net.TCPConn) (*TCPState, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	st := &TCPState{Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()}
	var derr error
	err = raw.Control(func(fdp uintptr) {
		fd := int(fdp)
		if derr = unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); derr != nil {
			derr = fmt.Errorf("TCP_REPAIR on (needs CAP_NET_ADMIN): %w", derr)
			return
		}
		info, err := getsockoptRaw(fd, unix.SOL_TCP, unix.TCP_INFO, make([]byte, 256))
		if err != nil {
			derr = fmt.Errorf("TCP_INFO: %w", err)
			return
		}
		st.Options = info[5]
		st.SndWscale, st.RcvWscale = info[6]&0xf, info[6]>>4
		mss, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_MAXSEG)
		if err != nil {
			derr = fmt.Errorf("TCP_MAXSEG: %w", err)
			return
		}
		st.MSS = uint32(mss)
		if ts, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP); err == nil {
			st.Timestamp = uint32(ts)
		}
		if w, err := getsockoptRaw(fd, unix.SOL_TCP, unix.TCP_REPAIR_WINDOW, make([]byte, 20)); err == nil {
			st.Window = append([]byte(nil), w...)
		}
		outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			derr = fmt.Errorf("SIOCOUTQ: %w", err)
			return
		}
		inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil {
			derr = fmt.Errorf("SIOCINQ: %w", err)
			return
		}
		if st.SndQueue, derr = peekQueue(fd, tcpSendQueue, outq); derr != nil {
			return
		}
		seq, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ)
		if err != nil {
			derr = fmt.Errorf("TCP_QUEUE_SEQ send: %w", err)
			return
		}
		st.SndSeq = uint32(seq)
		if st.RcvQueue, derr = peekQueue(fd, tcpRecvQueue, inq); derr != nil {
			return
		}
		if seq, err = unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ); err != nil {
			derr = fmt.Errorf("TCP_QUEUE_SEQ recv: %w", err)
			return
		}
		st.RcvSeq = uint32(seq)
	})
	if err != nil {
		return nil, err
	}
	return st, derr
}

// RestoreTCP recreates the connection bound to local (vmB's address for the
// moved flow; the port of st.Local) and returns it out of repair mode.
func RestoreTCP(st *TCPState, local netip.Addr) (net.Conn, error) {
	lap, err := netip.ParseAddrPort(st.Local)
	if err != nil {
		return nil, err
	}
	rap, err := netip.ParseAddrPort(st.Remote)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	step := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("restore: %s: %w", what, err)
		}
		return nil
	}
	if err := step("TCP_REPAIR on", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON)); err != nil {
		return nil, err
	}
	if err := step("SO_REUSEADDR", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)); err != nil {
		return nil, err
	}
	for _, q := range []struct {
		queue int
		seq   uint32
	}{{tcpSendQueue, st.SndSeq - uint32(len(st.SndQueue))}, {tcpRecvQueue, st.RcvSeq - uint32(len(st.RcvQueue))}} {
		if err := step("TCP_REPAIR_QUEUE", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q.queue)); err != nil {
			return nil, err
		}
		if err := step("TCP_QUEUE_SEQ", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, int(q.seq))); err != nil {
			return nil, err
		}
	}
	if err := step("bind", unix.Bind(fd, &unix.SockaddrInet4{Addr: local.As4(), Port: int(lap.Port())})); err != nil {
		return nil, err
	}
	if err := step("connect", unix.Connect(fd, &unix.SockaddrInet4{Addr: rap.Addr().As4(), Port: int(rap.Port())})); err != nil {
		return nil, err
	}
	var opts []byte
	add := func(code, val uint32) {
		opts = binary.NativeEndian.AppendUint32(opts, code)
		opts = binary.NativeEndian.AppendUint32(opts, val)
	}
	add(tcpoptMaxseg, st.MSS)
	if st.Options&tcpiOptWscale != 0 {
		add(tcpoptWindow, uint32(st.SndWscale)|uint32(st.RcvWscale)<<16)
	}
	if st.Options&tcpiOptSACK != 0 {
		add(tcpoptSACKPerm, 0)
	}
	if st.Options&tcpiOptTimestamps != 0 {
		add(tcpoptTimestamp, 0)
	}
	if err := step("TCP_REPAIR_OPTIONS", unix.SetsockoptString(fd, unix.SOL_TCP, unix.TCP_REPAIR_OPTIONS, string(opts))); err != nil {
		return nil, err
	}
	if st.Options&tcpiOptTimestamps != 0 {
		if err := step("TCP_TIMESTAMP", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP, int(st.Timestamp))); err != nil {
			return nil, err
		}
	}
	for _, q := range []struct {
		queue int
		data  []byte
	}{{tcpRecvQueue, st.RcvQueue}, {tcpSendQueue, st.SndQueue}} {
		if len(q.data) == 0 {
			continue
		}
		if err := step("TCP_REPAIR_QUEUE", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q.queue)); err != nil {
			return nil, err
		}
		if _, err := unix.Write(fd, q.data); err != nil {
			return nil, step("queue data", err)
		}
	}
	if len(st.Window) == 20 {
		if err := step("TCP_REPAIR_WINDOW", unix.SetsockoptString(fd, unix.SOL_TCP, unix.TCP_REPAIR_WINDOW, string(st.Window))); err != nil {
			return nil, err
		}
	}
	// No window probe on leaving repair mode: vmB must stay silent until
	// the gateway sends it the flow. A probe sent before the reassign would
	// make the kernel arm create a second conntrack entry for the same
	// public tuple (SNAT'd to another port), which the client resets.
	if err := step("TCP_REPAIR off", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP)); err != nil {
		return nil, err
	}
	ok = true // the file owns fd from here
	f := os.NewFile(uintptr(fd), "restored")
	c, err := net.FileConn(f)
	f.Close()
	return c, err
}
