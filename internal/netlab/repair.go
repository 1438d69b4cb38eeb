package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TCPState is what it takes to recreate an established TCP connection in
// another namespace with TCP_REPAIR, as CRIU (libsoccr) does: the
// addresses, both sequence numbers, the queued bytes, the negotiated
// options, the timestamp clock and the window.
type TCPState struct {
	Local      netip.AddrPort `json:"local"`
	Remote     netip.AddrPort `json:"remote"`
	SndSeq     uint32         `json:"snd_seq"`   // sequence number after the last byte in the send queue
	RcvSeq     uint32         `json:"rcv_seq"`   // sequence number after the last byte in the receive queue
	SndQueue   []byte         `json:"snd_queue"` // sent-but-unacknowledged then unsent bytes
	Unsent     int            `json:"unsent"`    // how many bytes at the end of SndQueue were never sent
	RcvQueue   []byte         `json:"rcv_queue"` // received bytes the application has not read
	MSS        uint32         `json:"mss"`
	Options    uint8          `json:"options"` // tcpi_options: timestamps, SACK, window scaling
	SndWscale  uint8          `json:"snd_wscale"`
	RcvWscale  uint8          `json:"rcv_wscale"`
	Timestamp  uint32         `json:"timestamp"`
	Window     [5]uint32      `json:"window"` // struct tcp_repair_window: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup
	HaveWindow bool           `json:"have_window"`
}

// tcpi_options bits (linux/tcp.h) and struct tcp_info's layout: the
// options at byte 5, the two window scales in the nibbles of byte 6.
const (
	tcpiOptTimestamps = 1
	tcpiOptSACK       = 2
	tcpiOptWscale     = 4

	tcpRecvQueue = 1 // TCP_RECV_QUEUE
	tcpSendQueue = 2 // TCP_SEND_QUEUE
)

// getsockopt reads a socket option of any size (x/sys's string variant
// stops at the first zero byte).
func getsockopt(fd, level, opt int, buf []byte) ([]byte, error) {
	n := uint32(len(buf))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return nil, errno
	}
	return buf[:n], nil
}

func setsockopt(fd, level, opt int, buf []byte) error {
	_, _, errno := syscall.Syscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Freeze puts the connection's socket in repair mode, where the kernel
// sends nothing for it any more (closing it then sends neither FIN nor
// RST), and returns its state. The caller closes c once the connection
// lives elsewhere.
func Freeze(c *net.TCPConn) (*TCPState, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	st := &TCPState{
		Local:  c.LocalAddr().(*net.TCPAddr).AddrPort(),
		Remote: c.RemoteAddr().(*net.TCPAddr).AddrPort(),
	}
	st.Local = netip.AddrPortFrom(st.Local.Addr().Unmap(), st.Local.Port())
	st.Remote = netip.AddrPortFrom(st.Remote.Addr().Unmap(), st.Remote.Port())
	var ferr error
	err = raw.Control(func(fdp uintptr) { ferr = freeze(int(fdp), st) })
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("freeze %v-%v: %w", st.Local, st.Remote, err)
	}
	return st, nil
}

func freeze(fd int, st *TCPState) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return fmt.Errorf("TCP_REPAIR on (needs CAP_NET_ADMIN): %w", err)
	}
	// A socket in repair mode still takes segments: an ACK that opens the
	// peer's window would make it transmit queued bytes that the copy
	// does not know were sent. With the send queue selected, the kernel
	// only pretends to transmit (CRIU locks the network instead).
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue); err != nil {
		return fmt.Errorf("TCP_REPAIR_QUEUE send: %w", err)
	}
	info, err := getsockopt(fd, unix.SOL_TCP, unix.TCP_INFO, make([]byte, 256))
	if err != nil || len(info) < 8 {
		return fmt.Errorf("TCP_INFO: %v (%d bytes)", err, len(info))
	}
	if info[0] != unix.BPF_TCP_ESTABLISHED {
		return fmt.Errorf("state %d, want established", info[0])
	}
	st.Options = info[5]
	st.SndWscale, st.RcvWscale = info[6]&0xf, info[6]>>4
	mss, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_MAXSEG)
	if err != nil {
		return fmt.Errorf("TCP_MAXSEG: %w", err)
	}
	st.MSS = uint32(mss)
	if st.Options&tcpiOptTimestamps != 0 {
		ts, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP)
		if err != nil {
			return fmt.Errorf("TCP_TIMESTAMP: %w", err)
		}
		st.Timestamp = uint32(ts)
	}
	if w, err := getsockopt(fd, unix.SOL_TCP, unix.TCP_REPAIR_WINDOW, make([]byte, 20)); err == nil && len(w) == 20 {
		for i := range st.Window {
			st.Window[i] = binary.NativeEndian.Uint32(w[4*i:])
		}
		st.HaveWindow = true
	}
	outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return fmt.Errorf("SIOCOUTQ: %w", err)
	}
	inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return fmt.Errorf("SIOCINQ: %w", err)
	}
	// The receive queue first, so that the send queue stays selected.
	if st.RcvQueue, st.RcvSeq, err = dumpQueue(fd, tcpRecvQueue, inq); err != nil {
		return err
	}
	if st.SndQueue, st.SndSeq, err = dumpQueue(fd, tcpSendQueue, outq); err != nil {
		return err
	}
	// Unsent bytes only ever become "sent" here (pretended): read last,
	// the count never calls unsent a byte that the peer may have got.
	unsent, err := unix.IoctlGetInt(fd, unix.SIOCOUTQNSD)
	if err != nil {
		return fmt.Errorf("SIOCOUTQNSD: %w", err)
	}
	st.Unsent = min(unsent, len(st.SndQueue))
	return nil
}

// dumpQueue reads a whole queue of a socket in repair mode without taking
// it, and the sequence number that follows its last byte. The socket still
// takes segments in repair mode (ACKs shrink the send queue, data grows the
// receive queue), so size is a hint: the queue and its sequence number are
// read under the socket's lock by the peek and checked for consistency.
func dumpQueue(fd, queue, size int) ([]byte, uint32, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, queue); err != nil {
		return nil, 0, fmt.Errorf("TCP_REPAIR_QUEUE %d: %w", queue, err)
	}
	for try := 0; try < 10; try++ {
		before, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ)
		if err != nil {
			return nil, 0, fmt.Errorf("TCP_QUEUE_SEQ %d: %w", queue, err)
		}
		buf := make([]byte, size+(64<<10))
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			n, err = 0, nil // an empty queue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("peek queue %d (%d bytes): %w", queue, size, err)
		}
		after, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ)
		if err != nil {
			return nil, 0, fmt.Errorf("TCP_QUEUE_SEQ %d: %w", queue, err)
		}
		// The send queue's sequence number (write_seq) cannot move in
		// repair mode; the receive queue's (rcv_nxt) moves when data
		// arrives, and then the peek may not match it: read again.
		if before == after && n < len(buf) {
			return buf[:n], uint32(after), nil
		}
		size = 2 * (n + 1)
	}
	return nil, 0, fmt.Errorf("queue %d keeps changing", queue)
}

// Thawed is a connection recreated in another namespace and still in
// repair mode: it sends nothing, so it cannot race the frozen original.
type Thawed struct {
	fd int
	st *TCPState
}

// Thaw recreates the connection in namespace ns (a full namespace name;
// "": this process's own), bound to st.Local and connected to the same
// peer, with the state Freeze read (a caller may change st.Local's address
// when the new host holds another one). It stays in repair mode until
// Resume. The state can cross processes as JSON.
func Thaw(ns string, st *TCPState) (*Thawed, error) {
	var fd int
	socket := func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return err
	}
	var err error
	if ns == "" {
		err = socket()
	} else {
		err = InNetns(ns, socket)
	}
	if err != nil {
		return nil, fmt.Errorf("thaw in %s: socket: %w", ns, err)
	}
	if err := thaw(fd, st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("thaw %v-%v in %s: %w", st.Local, st.Remote, ns, err)
	}
	return &Thawed{fd: fd, st: st}, nil
}

// Resume takes the connection out of repair mode with a window probe (the
// peer answers with an ACK that carries its current window), then queues
// the bytes that the original had never sent, and returns the connection.
// Call it once the connection's packets reach this namespace.
func (t *Thawed) Resume() (*net.TCPConn, error) {
	if err := unix.SetsockoptInt(t.fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
		t.Abort()
		return nil, fmt.Errorf("resume: TCP_REPAIR off: %w", err)
	}
	if unsent := t.st.SndQueue[len(t.st.SndQueue)-t.st.Unsent:]; len(unsent) > 0 {
		if err := writeAll(t.fd, unsent); err != nil {
			unix.Close(t.fd)
			return nil, fmt.Errorf("resume: unsent bytes: %w", err)
		}
	}
	f := os.NewFile(uintptr(t.fd), "tcp-restored")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// Abort closes the recreated socket without a word to the peer (it is
// still in repair mode).
func (t *Thawed) Abort() { unix.Close(t.fd) }

func thaw(fd int, st *TCPState) error {
	step := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := step("TCP_REPAIR on", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON)); err != nil {
		return err
	}
	if err := step("SO_REUSEADDR", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)); err != nil {
		return err
	}
	// The queues must fit in the new socket's buffers at once (the old
	// one's had grown by autotuning); writes never block: a queue that
	// does not fit is an error, not a hang.
	if err := step("nonblocking", unix.SetNonblock(fd, true)); err != nil {
		return err
	}
	if n := len(st.SndQueue); n > 0 {
		if err := step("SO_SNDBUFFORCE", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*n+(256<<10))); err != nil {
			return err
		}
	}
	if n := len(st.RcvQueue); n > 0 {
		if err := step("SO_RCVBUFFORCE", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 2*n+(256<<10))); err != nil {
			return err
		}
	}
	// The sequence numbers where each queue starts: the restored queues
	// are written after connect and advance them to SndSeq and RcvSeq.
	for _, q := range []struct {
		queue int
		seq   uint32
	}{{tcpSendQueue, st.SndSeq - uint32(len(st.SndQueue))}, {tcpRecvQueue, st.RcvSeq - uint32(len(st.RcvQueue))}} {
		if err := step("TCP_REPAIR_QUEUE", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q.queue)); err != nil {
			return err
		}
		if err := step("TCP_QUEUE_SEQ", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, int(q.seq))); err != nil {
			return err
		}
	}
	if err := step("bind", unix.Bind(fd, &unix.SockaddrInet4{Addr: st.Local.Addr().As4(), Port: int(st.Local.Port())})); err != nil {
		return err
	}
	// In repair mode connect sends no SYN: the socket is established at once.
	if err := step("connect", unix.Connect(fd, &unix.SockaddrInet4{Addr: st.Remote.Addr().As4(), Port: int(st.Remote.Port())})); err != nil {
		return err
	}
	opts := []unix.TCPRepairOpt{{Code: unix.TCPOPT_MAXSEG, Val: st.MSS}}
	if st.Options&tcpiOptWscale != 0 {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_WINDOW, Val: uint32(st.SndWscale) | uint32(st.RcvWscale)<<16})
	}
	if st.Options&tcpiOptSACK != 0 {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_SACK_PERMITTED})
	}
	if st.Options&tcpiOptTimestamps != 0 {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_TIMESTAMP})
	}
	if err := step("TCP_REPAIR_OPTIONS", unix.SetsockoptTCPRepairOpt(fd, unix.SOL_TCP, unix.TCP_REPAIR_OPTIONS, opts)); err != nil {
		return err
	}
	if st.Options&tcpiOptTimestamps != 0 {
		if err := step("TCP_TIMESTAMP", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP, int(st.Timestamp))); err != nil {
			return err
		}
	}
	// In repair mode, bytes written to the send queue count as sent (they
	// wait for their ACK and are retransmitted if it does not come); the
	// bytes that had never been sent are queued by Resume, as ordinary
	// writes, once the connection's packets reach the new namespace.
	sent := st.SndQueue[:len(st.SndQueue)-st.Unsent]
	for _, q := range []struct {
		queue int
		data  []byte
	}{{tcpRecvQueue, st.RcvQueue}, {tcpSendQueue, sent}} {
		if len(q.data) == 0 {
			continue
		}
		if err := step("TCP_REPAIR_QUEUE", unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q.queue)); err != nil {
			return err
		}
		if err := writeAll(fd, q.data); err != nil {
			return step(fmt.Sprintf("restore queue %d (%d bytes)", q.queue, len(q.data)), err)
		}
	}
	if st.HaveWindow {
		b := make([]byte, 20)
		for i, v := range st.Window {
			binary.NativeEndian.PutUint32(b[4*i:], v)
		}
		if err := step("TCP_REPAIR_WINDOW", setsockopt(fd, unix.SOL_TCP, unix.TCP_REPAIR_WINDOW, b)); err != nil {
			return err
		}
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("short write")
		}
		b = b[n:]
	}
	return nil
}

// Migrate moves the established connection old to namespace ns (a full
// name) the way a live migration does: freeze old, recreate it in ns (in
// repair mode: silent), run swap (the reassign that sends the
// connection's packets to ns from now on), resume the new socket, then
// close old, which in repair mode sends nothing. When a step fails before
// the swap, the new socket is dropped and old is taken out of repair mode.
func Migrate(old *net.TCPConn, ns string, swap func() error) (*net.TCPConn, *TCPState, error) {
	st, err := Freeze(old)
	if err != nil {
		unfreeze(old)
		return nil, nil, err
	}
	th, err := Thaw(ns, st)
	if err == nil {
		if err = swap(); err != nil {
			th.Abort()
		}
	}
	if err != nil {
		unfreeze(old)
		return nil, st, err
	}
	nc, err := th.Resume()
	old.Close()
	return nc, st, err
}

// unfreeze takes a socket out of repair mode (without a window probe).
func unfreeze(c *net.TCPConn) {
	if raw, err := c.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP)
		})
	}
}

// String describes the state without the queued bytes.
func (st *TCPState) String() string {
	return fmt.Sprintf("%v-%v snd_seq %d rcv_seq %d send queue %d bytes (%d unsent) receive queue %d bytes mss %d options %#x wscale %d/%d ts %d window %v",
		st.Local, st.Remote, st.SndSeq, st.RcvSeq, len(st.SndQueue), st.Unsent, len(st.RcvQueue), st.MSS, st.Options, st.SndWscale, st.RcvWscale, st.Timestamp, st.Window)
}
