package tap

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Device is a tap:IFNAME[@NETNS] port: a TAP device that roam creates and
// whose queues it holds; the kernel side of the device is the guest. It is
// opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (unless Options.NoOffload) and
// TUNSETOFFLOAD (checksum, TSO4, TSO6 and, when the kernel has it, USO), so
// the guest hands over super-frames of up to 64 KiB with partial checksums and
// accepts them back whole.
//
// With Options.Queues = N > 1 the device is opened with IFF_MULTI_QUEUE and
// one file descriptor per queue; Queues returns one Port per queue, and the
// Device's own Read and Write are those of queue 0. The kernel spreads the
// guest's flows over the queues by hash; roam runs one reader per queue and
// may write a frame to any queue. Device.Stats sums the queues.
//
// The device is not persistent: it disappears when the Device is closed.
// When it disappears first (ip link del, or its namespace is deleted), Read
// and Write return errors wrapping ErrDeviceGone.
type Device struct {
	name   string
	spec   Spec
	queues []*Queue
	ports  []Port
	ctl    int  // a socket in the device's namespace, for ioctls
	uso    bool // the kernel took TUN_F_USO4|TUN_F_USO6
	gone   atomic.Bool
	closed atomic.Bool
	once   sync.Once
}

// Queue is one queue of a Device, a Port of its own.
type Queue struct {
	dev  *Device
	idx  int
	f    *os.File
	rc   syscall.RawConn
	vnet bool
	counters

	rmu     sync.Mutex // guards the read state; Read blocks holding it
	rframes []Frame
	rn      int
	rbytes  int
	rerr    error
	readFn  func(fd uintptr) bool

	wmu     sync.Mutex // guards the write state; Write is safe for concurrent use
	wframes []Frame
	wi      int
	werr    error
	writeFn func(fd uintptr) bool
	iov     [2]unix.Iovec
	hdr     [vnetHdrLen]byte
	soft    softGSO
	segs    []Frame
	si      int
}

const (
	tunOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	tunUSO      = unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// OpenDevice creates the TAP device ifname in namespace ns ("" for roamd's
// own) with opts.Queues queues and applies opts.MAC, opts.MTU and opts.Up to
// it.
func OpenDevice(ifname, ns string, opts Options) (*Device, error) {
	return openDevice(Spec{Kind: KindTAP, Name: ifname, Netns: ns}, opts)
}

func openTAP(s Spec, opts Options) (Port, error) { return openDevice(s, opts) }

func openDevice(s Spec, opts Options) (*Device, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	nq := max(opts.Queues, 1)
	d := &Device{name: s.String(), spec: s}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if !opts.NoOffload {
		flags |= unix.IFF_VNET_HDR
	}
	if nq > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	var fds []int
	err := InNetns(s.Netns, func() error {
		// A socket in the device's namespace answers LinkUp's ioctl.
		ctl, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		d.ctl = ctl
		for i := 0; i < nq; i++ {
			fd, uso, err := openQueue(s.Name, flags, !opts.NoOffload, !opts.NoUSO)
			if err != nil {
				return fmt.Errorf("queue %d: %w", i, err)
			}
			d.uso = uso
			fds = append(fds, fd)
		}
		return nil
	})
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		if d.ctl > 0 {
			unix.Close(d.ctl)
		}
		return nil, err
	}
	for i, fd := range fds {
		q := &Queue{dev: d, idx: i, vnet: !opts.NoOffload}
		q.f = os.NewFile(uintptr(fd), "/dev/net/tun")
		if q.rc, err = q.f.SyscallConn(); err != nil {
			q.f.Close()
			d.Close()
			return nil, err
		}
		q.readFn = q.readSome
		q.writeFn = q.writeSome
		d.queues = append(d.queues, q)
		d.ports = append(d.ports, q)
	}
	if opts.MAC != nil || opts.MTU != 0 || opts.Up {
		if err := ConfigureLink(s.Name, s.Netns, LinkSettings{MAC: opts.MAC, MTU: opts.MTU, Up: opts.Up}); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// openQueue opens one queue of the TAP device in the current namespace and
// reports whether the kernel took USO.
func openQueue(ifname string, flags uint16, vnet, uso bool) (int, bool, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, false, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	fail := func(err error) (int, bool, error) {
		unix.Close(fd)
		return -1, false, err
	}
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return fail(err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		hint := ""
		switch err {
		case unix.EINVAL:
			hint = " (a link of that name exists and is not a TAP, or its flags differ)"
		case unix.EBUSY:
			hint = " (the TAP exists and another process holds its queue)"
		}
		return fail(fmt.Errorf("TUNSETIFF %s: %w%s", ifname, err, hint))
	}
	if !vnet {
		return fd, false, nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		return fail(fmt.Errorf("TUNSETVNETHDRSZ %s: %w", ifname, err))
	}
	if uso && unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloads|tunUSO) == nil {
		return fd, true, nil
	}
	// Kernels before 6.2 have no USO: do without it.
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloads); err != nil {
		return fail(fmt.Errorf("TUNSETOFFLOAD %s: %w", ifname, err))
	}
	return fd, false, nil
}

// USO reports whether the device takes and hands over UDP super-frames
// (GSOUDPL4): Linux 6.2 and later, unless Options.NoUSO.
func (d *Device) USO() bool { return d.uso }

// Name implements Port: the spec, e.g. "tap:vm1@ns1".
func (d *Device) Name() string { return d.name }

// IfName returns the device's interface name.
func (d *Device) IfName() string { return d.spec.Name }

// Netns returns the namespace the device lives in ("" for roamd's own).
func (d *Device) Netns() string { return d.spec.Netns }

// Queues implements Multiqueue.
func (d *Device) Queues() []Port { return d.ports }

// Read implements Port: it reads queue 0.
func (d *Device) Read(frames []Frame) (int, error) { return d.queues[0].Read(frames) }

// Write implements Port: it writes to queue 0.
func (d *Device) Write(frames []Frame) (int, error) { return d.queues[0].Write(frames) }

// Operational reports whether the device still exists and the port is open.
// The guest side may still be down (see LinkUp): that is the guest's choice,
// and frames written meanwhile are dropped and counted (DropLinkDown).
func (d *Device) Operational() bool { return !d.closed.Load() && !d.gone.Load() }

// LinkUp reports whether the guest side of the device is up.
func (d *Device) LinkUp() bool {
	if !d.Operational() {
		return false
	}
	ifr, err := unix.NewIfreq(d.spec.Name)
	if err != nil {
		return false
	}
	if unix.IoctlIfreq(d.ctl, unix.SIOCGIFFLAGS, ifr) != nil {
		return false
	}
	return ifr.Uint16()&unix.IFF_UP != 0
}

// Stats implements Stater, summing the queues.
func (d *Device) Stats() Stats {
	var s Stats
	for _, q := range d.queues {
		qs := q.Stats()
		s.RxFrames += qs.RxFrames
		s.RxBytes += qs.RxBytes
		s.TxFrames += qs.TxFrames
		s.TxBytes += qs.TxBytes
		for i := range s.Drops {
			s.Drops[i] += qs.Drops[i]
		}
	}
	return s
}

// SetMAC gives the guest side of the device the address mac.
func (d *Device) SetMAC(mac []byte) error {
	return ConfigureLink(d.spec.Name, d.spec.Netns, LinkSettings{MAC: mac})
}

// SetMTU sets the guest side's MTU.
func (d *Device) SetMTU(mtu int) error {
	return ConfigureLink(d.spec.Name, d.spec.Netns, LinkSettings{MTU: mtu})
}

// SetUp brings the guest side up or down.
func (d *Device) SetUp(up bool) error {
	return ConfigureLink(d.spec.Name, d.spec.Netns, LinkSettings{Up: up, Down: !up})
}

// Close implements Port: it closes every queue, which removes the device.
func (d *Device) Close() error {
	d.once.Do(func() {
		d.closed.Store(true)
		for _, q := range d.queues {
			q.f.Close()
		}
		unix.Close(d.ctl)
	})
	return nil
}

// detached reports whether the TUN/TAP file f lost its device (deleted with
// ip link del, or by its namespace going away).
func detached(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = rc.Control(func(fd uintptr) {
		var ifr [unix.IFNAMSIZ + 64]byte
		_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.TUNGETIFF, uintptr(unsafe.Pointer(&ifr[0])))
		gone = e == unix.EBADFD
	})
	return gone
}

// Name implements Port: the device's spec and the queue, e.g. "tap:vm1#2".
func (q *Queue) Name() string { return fmt.Sprintf("%s#%d", q.dev.name, q.idx) }

// Operational reports whether the device is usable.
func (q *Queue) Operational() bool { return q.dev.Operational() }

// Stats implements Stater.
func (q *Queue) Stats() Stats { return q.snapshot() }

// Close implements Port: closing any queue closes the device.
func (q *Queue) Close() error { return q.dev.Close() }

// err maps a failed read or write to the error Read or Write returns.
func (q *Queue) err(op string, err error) error {
	switch {
	case q.dev.closed.Load() || errors.Is(err, os.ErrClosed):
		return fmt.Errorf("%s: %w", q.dev.name, ErrClosed)
	case q.dev.gone.Load(), errors.Is(err, unix.EBADFD), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO), detached(q.f):
		// The poller may report the detach as "not pollable" (EPOLLERR)
		// before any read sees EBADFD: detached asks the device itself.
		q.dev.gone.Store(true)
		return fmt.Errorf("%s: %s: %w (%w)", q.dev.name, op, ErrDeviceGone, err)
	}
	return fmt.Errorf("%s: %s: %w", q.dev.name, op, err)
}

// Read implements Port. It blocks until the guest sends a frame, then returns
// that frame and every other one already queued, up to len(frames). Frame
// buffers should hold Headroom+MaxFrame bytes: a frame that does not fit is
// dropped and counted (DropTruncated).
func (q *Queue) Read(frames []Frame) (int, error) {
	if len(frames) == 0 {
		return 0, nil
	}
	q.rmu.Lock()
	defer q.rmu.Unlock()
	q.rframes, q.rn, q.rbytes, q.rerr = frames, 0, 0, nil
	for {
		if err := q.rc.Read(q.readFn); err != nil {
			return q.finishRead(err)
		}
		if q.rn > 0 || q.rerr != nil {
			return q.finishRead(q.rerr)
		}
	}
}

func (q *Queue) finishRead(err error) (int, error) {
	n := q.rn
	q.rx(n, q.rbytes)
	q.rframes = nil
	if n > 0 {
		return n, nil // an error after some frames shows up on the next Read
	}
	return 0, q.err("read", err)
}

// readSome is the RawConn.Read callback: it reads until the batch is full or
// the queue is empty, and asks to wait only if it read nothing.
func (q *Queue) readSome(fd uintptr) bool {
	for q.rn < len(q.rframes) {
		f := &q.rframes[q.rn]
		at := Headroom
		if q.vnet {
			at -= vnetHdrLen
		}
		if len(f.Buf) <= Headroom {
			q.drop(DropOversize)
			q.rerr = fmt.Errorf("frame buffer of %d bytes", len(f.Buf))
			return true
		}
		n, err := unix.Read(int(fd), f.Buf[at:])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return q.rn > 0
		}
		if err != nil {
			q.rerr = err
			return true
		}
		if n > len(f.Buf)-at || n == len(f.Buf)-at && len(f.Buf)-Headroom < MaxFrame {
			// The kernel cuts a frame to the buffer without saying so:
			// a small buffer that came back full held a cut frame (or
			// one that fitted exactly: it is dropped all the same).
			q.drop(DropTruncated)
			continue
		}
		if q.vnet {
			n -= vnetHdrLen
		}
		if n < ethHdrLen {
			q.drop(DropRunt)
			continue
		}
		f.Off = Headroom
		f.Len = n
		if q.vnet {
			if r := decodeVnetHdr(f.Buf[at:Headroom], f.Buf[Headroom:Headroom+n], &f.GSO); r != 0 {
				q.drop(r)
				continue
			}
		} else {
			f.GSO = GSO{}
		}
		q.rbytes += n
		q.rn++
	}
	return true
}

// Write implements Port. Each frame goes to the kernel with one write, its
// virtio-net header built from Frame.GSO in the frame's headroom (or, without
// headroom, from scratch space with writev). A frame the kernel refuses is
// dropped and counted; only a closed port or a vanished device is an error.
// Write is safe for concurrent use.
func (q *Queue) Write(frames []Frame) (int, error) {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.wframes, q.wi, q.werr = frames, 0, nil
	q.segs, q.si = nil, 0
	for q.wi < len(q.wframes) && q.werr == nil {
		if err := q.rc.Write(q.writeFn); err != nil {
			q.werr = err
		}
	}
	q.wframes, q.segs = nil, nil
	if q.werr != nil {
		return q.wi, q.err("write", q.werr)
	}
	return len(frames), nil
}

// writeSome is the RawConn.Write callback.
func (q *Queue) writeSome(fd uintptr) bool {
	for q.wi < len(q.wframes) && q.werr == nil {
		f := &q.wframes[q.wi]
		if !q.vnet && (f.GSO.Type != GSONone || f.GSO.NeedsCsum) {
			if !q.writeSoft(fd, f) {
				return false
			}
			continue
		}
		if f.Len > MaxFrame || f.Len < ethHdrLen {
			q.drop(DropOversize)
			q.wi++
			continue
		}
		var err error
		switch {
		case !q.vnet:
			_, err = unix.Write(int(fd), f.Bytes())
		default:
			b := f.Bytes()
			if f.GSO.Type != GSONone && !f.GSO.NeedsCsum && !setPartial(b, &f.GSO) {
				q.drop(DropSegment)
				q.wi++
				continue
			}
			if f.Off >= vnetHdrLen {
				h := f.Buf[f.Off-vnetHdrLen : f.Off]
				encodeVnetHdr(h, b, &f.GSO)
				_, err = unix.Write(int(fd), f.Buf[f.Off-vnetHdrLen:f.Off+f.Len])
			} else {
				encodeVnetHdr(q.hdr[:], b, &f.GSO)
				err = q.writev(fd, q.hdr[:], b)
			}
		}
		if !q.wrote(err, f.Len) {
			return false
		}
	}
	return true
}

// writeSoft writes f through software segmentation and checksum completion,
// for a queue opened without offloads. It returns false to wait for the
// device to become writable.
func (q *Queue) writeSoft(fd uintptr, f *Frame) bool {
	if q.segs == nil {
		if f.GSO.Type == GSONone {
			if !CompleteChecksum(f) {
				q.drop(DropBadVnetHdr)
				q.wi++
				return true
			}
			return true // written as a plain frame by the caller's loop
		}
		q.segs = q.soft.segment(f)
		q.si = 0
		if q.segs == nil {
			q.drop(DropSegment)
			q.wi++
			return true
		}
	}
	for q.si < len(q.segs) {
		s := &q.segs[q.si]
		_, err := unix.Write(int(fd), s.Bytes())
		if err == unix.EAGAIN {
			return false
		}
		q.si++
		q.count(err, s.Len)
		if q.werr != nil {
			return true
		}
	}
	q.segs = nil
	q.wi++
	return true
}

// wrote accounts for one write of a frame of n bytes, advancing to the next
// frame unless the device asks to wait (false).
func (q *Queue) wrote(err error, n int) bool {
	if err == unix.EAGAIN {
		return false
	}
	if err == unix.EINTR {
		return true
	}
	q.wi++
	q.count(err, n)
	return true
}

func (q *Queue) count(err error, n int) {
	switch err {
	case nil:
		q.tx(1, n)
	case unix.EIO:
		// The kernel refuses writes to a TAP whose guest side is down.
		q.drop(DropLinkDown)
	case unix.EBADFD, unix.ENODEV, unix.ENXIO:
		q.werr = err
	default:
		q.drop(DropTxError)
	}
}

// writev writes the header h and the frame b with one system call.
func (q *Queue) writev(fd uintptr, h, b []byte) error {
	q.iov[0].Base = &h[0]
	q.iov[0].SetLen(len(h))
	q.iov[1].Base = &b[0]
	q.iov[1].SetLen(len(b))
	_, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&q.iov[0])), 2)
	q.iov[0].Base, q.iov[1].Base = nil, nil
	if e != 0 {
		return e
	}
	return nil
}

var (
	_ Port          = (*Device)(nil)
	_ Port          = (*Queue)(nil)
	_ Multiqueue    = (*Device)(nil)
	_ Operationaler = (*Device)(nil)
	_ Stater        = (*Device)(nil)
)
