package tap

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Netdev is a netdev:IFNAME[@NETNS] port: an existing link (typically the
// TAP that QEMU opened with -netdev tap,ifname=IFNAME) read and written
// through an AF_PACKET socket (SOCK_RAW, ETH_P_ALL, bound to the link's
// ifindex, promiscuous). PACKET_IGNORE_OUTGOING keeps frames leaving through
// the link, ours included, out of Read. PACKET_VNET_HDR (unless
// Options.NoOffload) makes GSO super-frames and partial checksums arrive
// whole, with their virtio-net header, and lets Write send them whole.
//
// Batching uses recvmmsg and sendmmsg rather than a TPACKET_V3 ring: the
// Port contract fills buffers the caller owns, so a ring would cost the same
// one copy per frame that recvmmsg makes; a V3 ring gives a block to user
// space only when it is full or its retire timer (at least 1 ms) fires, which
// adds up to a millisecond of latency at low rates; and V1/V2 rings have
// fixed slots that would each need 64 KiB to hold a super-frame.
//
// When the link goes down Read waits (Operational reports false) and frames
// written meanwhile are dropped and counted; when the link is deleted Read
// and Write return errors wrapping ErrDeviceGone.
type Netdev struct {
	name    string
	spec    Spec
	ifindex int
	f       *os.File
	rc      syscall.RawConn
	vnet    bool
	hdr     int // bytes of virtio-net header before each frame
	batch   int
	gone    atomic.Bool
	closed  atomic.Bool
	once    sync.Once
	counters

	rmu         sync.Mutex // guards the read state
	rframes     []Frame
	rn          int
	rbytes      int
	rerr        error
	down        bool // the link went down (ENETDOWN) and has not delivered since
	checkGoneFn func(fd uintptr)
	rmsg        []unix.Mmsghdr
	riov        []unix.Iovec
	recvFn      func(fd uintptr) bool

	wmu    sync.Mutex // guards the write state; Write is safe for concurrent use
	pend   []*Frame
	pi     int
	werr   error
	wmsg   []unix.Mmsghdr
	wiov   []unix.Iovec
	whdr   [][vnetHdrLen]byte
	sendFn func(fd uintptr) bool
	soft   softGSO
}

// OpenNetdev attaches to the existing link ifname in namespace ns ("" for
// roamd's own).
func OpenNetdev(ifname, ns string, opts Options) (*Netdev, error) {
	return openNetdevSpec(Spec{Kind: KindNetdev, Name: ifname, Netns: ns}, opts)
}

func openNetdev(s Spec, opts Options) (Port, error) { return openNetdevSpec(s, opts) }

func openNetdevSpec(s Spec, opts Options) (*Netdev, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	p := &Netdev{name: s.String(), spec: s, vnet: !opts.NoOffload, batch: opts.Batch}
	if p.batch <= 0 {
		p.batch = 64
	}
	if p.vnet {
		p.hdr = vnetHdrLen
	}
	var fd int
	err := InNetns(s.Netns, func() error {
		var err error
		fd, p.ifindex, err = packetSocket(s.Name, p.vnet)
		return err
	})
	if err != nil {
		return nil, err
	}
	p.f = os.NewFile(uintptr(fd), "packet:"+s.Name)
	if p.rc, err = p.f.SyscallConn(); err != nil {
		p.f.Close()
		return nil, err
	}
	p.rmsg = make([]unix.Mmsghdr, p.batch)
	p.riov = make([]unix.Iovec, p.batch)
	p.wmsg = make([]unix.Mmsghdr, p.batch)
	p.wiov = make([]unix.Iovec, 2*p.batch)
	p.whdr = make([][vnetHdrLen]byte, p.batch)
	p.pend = make([]*Frame, 0, p.batch)
	p.recvFn = p.recvSome
	p.checkGoneFn = func(fd uintptr) { p.checkGone(int(fd)) }
	p.sendFn = p.sendSome
	return p, nil
}

// packetSocket opens and binds the AF_PACKET socket in the current namespace.
func packetSocket(ifname string, vnet bool) (fd, ifindex int, err error) {
	fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("socket AF_PACKET: %w", err)
	}
	fail := func(op string, err error) (int, int, error) {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("%s %s: %w", op, ifname, err)
	}
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return fail("ifreq", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return fail("find link", err)
	}
	ifindex = int(ifr.Uint32())
	if vnet {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return fail("PACKET_VNET_HDR", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("PACKET_IGNORE_OUTGOING", err)
	}
	// Best effort: big buffers absorb bursts; FORCE works for root only.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	mreq := &unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mreq); err != nil {
		return fail("promiscuous", err)
	}
	return fd, ifindex, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Name implements Port.
func (p *Netdev) Name() string { return p.name }

// Stats implements Stater.
func (p *Netdev) Stats() Stats { return p.snapshot() }

// Operational reports whether the link exists and is up and running.
func (p *Netdev) Operational() bool {
	if p.closed.Load() || p.gone.Load() {
		return false
	}
	up := false
	_ = p.rc.Control(func(fd uintptr) {
		ifr, err := p.linkIfreq(int(fd))
		if err != nil {
			return
		}
		if unix.IoctlIfreq(int(fd), unix.SIOCGIFFLAGS, ifr) == nil {
			fl := ifr.Uint16()
			up = fl&unix.IFF_UP != 0 && fl&unix.IFF_RUNNING != 0
		}
	})
	return up
}

// linkIfreq returns an ifreq naming the link by its current name (it may have
// been renamed); an ENODEV error means the link is gone.
func (p *Netdev) linkIfreq(fd int) (*unix.Ifreq, error) {
	ifr, _ := unix.NewIfreq("")
	ifr.SetUint32(uint32(p.ifindex))
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr); err != nil {
		return nil, err
	}
	name := ifr.Name()
	return unix.NewIfreq(name)
}

// checkGone reports whether the link no longer exists, and remembers it.
func (p *Netdev) checkGone(fd int) bool {
	if _, err := p.linkIfreq(fd); err == unix.ENODEV {
		p.gone.Store(true)
	}
	return p.gone.Load()
}

func (p *Netdev) err(op string, err error) error {
	switch {
	case p.closed.Load() || err == os.ErrClosed:
		return fmt.Errorf("%s: %w", p.name, ErrClosed)
	case p.gone.Load():
		return fmt.Errorf("%s: %s: %w (%w)", p.name, op, ErrDeviceGone, err)
	}
	return fmt.Errorf("%s: %s: %w", p.name, op, err)
}

// Read implements Port: one recvmmsg fills up to min(len(frames),
// Options.Batch) frames. Frames the kernel truncated or whose virtio-net
// header does not match are dropped and counted; the good ones are packed at
// the front of frames (frames may be reordered within the slice).
func (p *Netdev) Read(frames []Frame) (int, error) {
	if len(frames) == 0 {
		return 0, nil
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.gone.Load() {
		// The kernel reported the loss once; it will not again.
		return 0, p.err("read", unix.ENODEV)
	}
	p.rframes, p.rn, p.rbytes, p.rerr = frames, 0, 0, nil
	for {
		if p.down {
			// The kernel reports ENETDOWN once, for the link going down;
			// its deletion that may follow is not reported again. While
			// down, look every second.
			_ = p.f.SetReadDeadline(time.Now().Add(downPoll))
		}
		err := p.rc.Read(p.recvFn)
		if err == nil {
			err = p.rerr
		}
		if p.rn > 0 {
			if p.down {
				p.down = false
				_ = p.f.SetReadDeadline(time.Time{})
			}
			p.rx(p.rn, p.rbytes)
			p.rframes = nil
			return p.rn, nil
		}
		if p.down && err == unix.ENETDOWN {
			p.rerr = nil
			continue // now with a deadline
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && p.down {
			if p.rc.Control(p.checkGoneFn) == nil && !p.gone.Load() {
				continue
			}
			err = unix.ENODEV
		}
		if err != nil {
			p.rframes = nil
			return 0, p.err("read", err)
		}
	}
}

// downPoll is how often Read checks whether a link that went down was deleted.
const downPoll = time.Second

// recvSome is the RawConn.Read callback.
func (p *Netdev) recvSome(fd uintptr) bool {
	for {
		n := min(len(p.rframes), p.batch)
		at := Headroom - p.hdr
		for i := 0; i < n; i++ {
			f := &p.rframes[i]
			p.riov[i].Base = &f.Buf[at]
			p.riov[i].SetLen(len(f.Buf) - at)
			m := &p.rmsg[i]
			*m = unix.Mmsghdr{}
			m.Hdr.Iov = &p.riov[i]
			m.Hdr.SetIovlen(1)
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&p.rmsg[0])), uintptr(n), 0, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case unix.ENETDOWN:
			// Reported once when the link goes down or is deleted.
			if p.checkGone(int(fd)) {
				p.rerr = e
				return true
			}
			p.down = true
			p.rerr = e
			return true
		default:
			p.rerr = e
			return true
		}
		k := 0
		for i := 0; i < int(r); i++ {
			m := &p.rmsg[i]
			l := int(m.Len) - p.hdr
			f := &p.rframes[i]
			switch {
			case m.Hdr.Flags&unix.MSG_TRUNC != 0:
				p.drop(DropTruncated)
				continue
			case l < ethHdrLen:
				p.drop(DropRunt)
				continue
			}
			f.Off, f.Len = Headroom, l
			if p.vnet {
				if rs := decodeVnetHdr(f.Buf[at:Headroom], f.Bytes(), &f.GSO); rs != 0 {
					p.drop(rs)
					continue
				}
			} else {
				f.GSO = GSO{}
			}
			if k != i {
				p.rframes[k], p.rframes[i] = p.rframes[i], p.rframes[k]
			}
			p.rbytes += l
			k++
		}
		if k > 0 {
			p.rn = k
			return true
		}
		// Every frame was bad: the socket may hold more, so look again
		// rather than wait for an edge that may not come.
	}
}

// Write implements Port: frames go out with sendmmsg, each with a virtio-net
// header built from Frame.GSO (in scratch space: the headroom is left alone).
// Frames the kernel refuses are dropped and counted; only a closed port or a
// deleted link is an error. Write is safe for concurrent use.
func (p *Netdev) Write(frames []Frame) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.gone.Load() {
		return 0, p.err("write", unix.ENODEV)
	}
	p.werr = nil
	p.pend = p.pend[:0]
	for i := range frames {
		f := &frames[i]
		if f.Len > MaxFrame || f.Len < ethHdrLen {
			p.drop(DropOversize)
			continue
		}
		switch {
		case p.vnet:
			if f.GSO.Type != GSONone && !f.GSO.NeedsCsum && !setPartial(f.Bytes(), &f.GSO) {
				p.drop(DropSegment)
				continue
			}
			p.queue(f)
		case f.GSO.Type != GSONone:
			p.flush()
			segs := p.soft.segment(f)
			if segs == nil {
				p.drop(DropSegment)
				continue
			}
			for j := range segs {
				p.queue(&segs[j])
			}
			p.flush()
		default:
			if !CompleteChecksum(f) {
				p.drop(DropBadVnetHdr)
				continue
			}
			p.queue(f)
		}
		if p.werr != nil {
			break
		}
	}
	p.flush()
	if p.werr != nil {
		return 0, p.err("write", p.werr)
	}
	return len(frames), nil
}

func (p *Netdev) queue(f *Frame) {
	p.pend = append(p.pend, f)
	if len(p.pend) == p.batch {
		p.flush()
	}
}

// flush sends the pending frames.
func (p *Netdev) flush() {
	p.pi = 0
	for p.pi < len(p.pend) && p.werr == nil {
		if err := p.rc.Write(p.sendFn); err != nil {
			p.werr = err
		}
	}
	clear(p.pend)
	p.pend = p.pend[:0]
}

// sendSome is the RawConn.Write callback.
func (p *Netdev) sendSome(fd uintptr) bool {
	for p.pi < len(p.pend) {
		n := len(p.pend) - p.pi
		for i := 0; i < n; i++ {
			f := p.pend[p.pi+i]
			m := &p.wmsg[i]
			*m = unix.Mmsghdr{}
			iov := p.wiov[2*i : 2*i+2]
			if p.vnet {
				encodeVnetHdr(p.whdr[i][:], f.Bytes(), &f.GSO)
				iov[0].Base = &p.whdr[i][0]
				iov[0].SetLen(vnetHdrLen)
				iov[1].Base = &f.Buf[f.Off]
				iov[1].SetLen(f.Len)
				m.Hdr.Iov = &iov[0]
				m.Hdr.SetIovlen(2)
			} else {
				iov[0].Base = &f.Buf[f.Off]
				iov[0].SetLen(f.Len)
				m.Hdr.Iov = &iov[0]
				m.Hdr.SetIovlen(1)
			}
		}
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&p.wmsg[0])), uintptr(n), 0, 0, 0)
		switch e {
		case 0:
			for i := 0; i < int(r); i++ {
				p.tx(1, p.pend[p.pi+i].Len)
			}
			p.pi += int(r)
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case unix.ENETDOWN, unix.ENXIO:
			if p.checkGone(int(fd)) {
				p.werr = e
				return true
			}
			p.drop(DropLinkDown)
		case unix.ENODEV:
			p.gone.Store(true)
			p.werr = e
			return true
		default:
			p.drop(DropTxError)
		}
		p.pi++ // the first frame failed: skip it and go on
	}
	return true
}

// Close implements Port.
func (p *Netdev) Close() error {
	p.once.Do(func() {
		p.closed.Store(true)
		p.f.Close()
	})
	return nil
}

var (
	_ Port          = (*Netdev)(nil)
	_ Operationaler = (*Netdev)(nil)
	_ Stater        = (*Netdev)(nil)
)
