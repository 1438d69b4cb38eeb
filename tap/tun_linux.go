package tap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// TUN framing. A tun:IFNAME[@NETNS] port carries IP packets, but roam's data
// path works on Ethernet frames, so the port frames them: Read puts a
// synthetic Ethernet header before each packet (destination TUNLocalMAC,
// source TUNPeerMAC, EtherType from the IP version) and Write strips the
// Ethernet header, dropping (DropNotIP) anything that is not IPv4 or IPv6,
// such as ARP. There is no ARP on a TUN uplink: the switch sends to
// TUNPeerMAC, and the kernel routes.
var (
	TUNLocalMAC = net.HardwareAddr{0x02, 0x72, 0x6f, 0x61, 0x6d, 0x01} // roam's side
	TUNPeerMAC  = net.HardwareAddr{0x02, 0x72, 0x6f, 0x61, 0x6d, 0x02} // the kernel's side
)

// TUN is a tun:IFNAME[@NETNS] port, an uplink through a routed TUN device
// created with golang.zx2c4.com/wireguard/tun. That package negotiates
// IFF_VNET_HDR with TSO and USO: it splits the kernel's super-frames into
// packets on Read and coalesces packets into super-frames on Write (GRO), so
// frames read from a TUN port never carry GSO, and super-frames written to it
// are segmented in software first (Segment), then re-coalesced by the package.
//
// Addresses and routes on the device are the operator's business; the
// device is destroyed when the port is closed.
type TUN struct {
	name   string
	spec   Spec
	dev    wgtun.Device
	up     atomic.Bool
	gone   atomic.Bool
	closed atomic.Bool
	once   sync.Once
	events sync.WaitGroup
	counters

	rmu   sync.Mutex
	rbufs [][]byte
	sizes []int

	wmu   sync.Mutex
	wbufs [][]byte
	saved [][ethHdrLen]byte
	owner []*Frame // the caller's frame behind wbufs[i], nil for segments
	soft  softGSO
}

// tunOffset is where the IP packet starts in the buffers handed to the
// wireguard package: after the Ethernet header. The package needs 10 bytes
// before it for its virtio-net header; it overwrites part of the Ethernet
// header on Write, which the port restores.
const tunOffset = ethHdrLen

// OpenTUN creates the TUN device ifname in namespace ns ("" for roamd's own).
func OpenTUN(ifname, ns string, opts Options) (*TUN, error) {
	return openTUNSpec(Spec{Kind: KindTUN, Name: ifname, Netns: ns}, opts)
}

func openTUN(s Spec, opts Options) (Port, error) { return openTUNSpec(s, opts) }

func openTUNSpec(s Spec, opts Options) (*TUN, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	mtu := opts.MTU
	if mtu == 0 {
		mtu = 1500
	}
	t := &TUN{name: s.String(), spec: s}
	// The package's netlink listener socket is created here too, so it
	// watches the right namespace.
	err := InNetns(s.Netns, func() error {
		var err error
		t.dev, err = wgtun.CreateTUN(s.Name, mtu)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create tun %s: %w", s.Name, err)
	}
	t.events.Add(1)
	go t.watch()
	if opts.Up {
		if err := ConfigureLink(s.Name, s.Netns, LinkSettings{Up: true}); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// watch follows the device's up and down events until it is closed.
func (t *TUN) watch() {
	defer t.events.Done()
	for ev := range t.dev.Events() {
		switch {
		case ev&wgtun.EventUp != 0:
			t.up.Store(true)
		case ev&wgtun.EventDown != 0:
			t.up.Store(false)
		}
	}
}

// Name implements Port.
func (t *TUN) Name() string { return t.name }

// Stats implements Stater.
func (t *TUN) Stats() Stats { return t.snapshot() }

// Operational reports whether the device exists and is up.
func (t *TUN) Operational() bool {
	return !t.closed.Load() && !t.gone.Load() && t.up.Load()
}

// BatchSize returns the number of packets the device moves per call at best.
func (t *TUN) BatchSize() int { return t.dev.BatchSize() }

func (t *TUN) err(op string, err error) error {
	switch {
	case t.closed.Load():
		return fmt.Errorf("%s: %w", t.name, ErrClosed)
	case t.gone.Load() || errors.Is(err, syscall.EBADFD) || detached(t.dev.File()):
		t.gone.Store(true)
		return fmt.Errorf("%s: %s: %w (%w)", t.name, op, ErrDeviceGone, err)
	}
	return fmt.Errorf("%s: %s: %w", t.name, op, err)
}

// Read implements Port. Pass at least as many frames as a super-frame has
// segments (64 is plenty at MTU 1500): the package splits super-frames into
// frames, and drops one that needs more than it was given (counted as
// DropSegment).
func (t *TUN) Read(frames []Frame) (int, error) {
	if len(frames) == 0 {
		return 0, nil
	}
	t.rmu.Lock()
	defer t.rmu.Unlock()
	if t.gone.Load() {
		return 0, t.err("read", syscall.EBADFD)
	}
	if cap(t.rbufs) < len(frames) {
		t.rbufs = make([][]byte, len(frames))
		t.sizes = make([]int, len(frames))
	}
	bufs, sizes := t.rbufs[:len(frames)], t.sizes[:len(frames)]
	for i := range frames {
		bufs[i] = frames[i].Buf[Headroom:]
	}
	for {
		n, err := t.dev.Read(bufs, sizes, tunOffset)
		if n == 0 && err != nil {
			if errors.Is(err, wgtun.ErrTooManySegments) {
				t.drop(DropSegment)
				continue
			}
			// Whatever else it is (a deleted device shows up as "not
			// pollable" from the poller, or as os.ErrClosed), report it; a
			// detached device turns it into ErrDeviceGone.
			clear(bufs)
			return 0, t.err("read", err)
		}
		k, bytes := 0, 0
		for i := 0; i < n; i++ {
			if !wrapTUN(&frames[i], sizes[i]) {
				t.drop(DropNotIP)
				continue
			}
			if k != i {
				frames[k], frames[i] = frames[i], frames[k]
			}
			bytes += frames[k].Len
			k++
		}
		if k == 0 {
			continue
		}
		clear(bufs)
		t.rx(k, bytes)
		return k, nil
	}
}

// wrapTUN gives the IP packet of n bytes that the device read into
// f.Buf[Headroom+tunOffset:] an Ethernet header (TUNPeerMAC to
// TUNLocalMAC) and makes it f's frame. It returns false, leaving f as it
// was, for a packet that is neither IPv4 nor IPv6.
func wrapTUN(f *Frame, n int) bool {
	pkt := f.Buf[Headroom+tunOffset : Headroom+tunOffset+n]
	var et uint16
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		et = etherIPv4
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		et = etherIPv6
	default:
		return false
	}
	eth := f.Buf[Headroom : Headroom+ethHdrLen]
	copy(eth[0:6], TUNLocalMAC)
	copy(eth[6:12], TUNPeerMAC)
	binary.BigEndian.PutUint16(eth[12:], et)
	f.Off = Headroom
	f.Len = ethHdrLen + len(pkt)
	f.GSO = GSO{}
	return true
}

// Write implements Port: it strips each frame's Ethernet header and hands the
// packets to the device in one call. Super-frames are segmented, partial
// checksums completed. The package may rewrite bytes of the frames (it
// coalesces packets in place, in the buffers' spare room); the Ethernet
// headers are restored. Write is safe for concurrent use.
func (t *TUN) Write(frames []Frame) (int, error) {
	if t.closed.Load() {
		return 0, fmt.Errorf("%s: %w", t.name, ErrClosed)
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.wbufs, t.saved, t.owner = t.wbufs[:0], t.saved[:0], t.owner[:0]
	var err error
	for i := range frames {
		f := &frames[i]
		if f.Len < ethHdrLen || f.Len > MaxFrame {
			t.drop(DropOversize)
			continue
		}
		if et := binary.BigEndian.Uint16(f.Buf[f.Off+12:]); et != etherIPv4 && et != etherIPv6 {
			t.drop(DropNotIP)
			continue
		}
		if f.GSO.Type != GSONone {
			// The segments live in scratch space until the next
			// super-frame: send what is queued now.
			if err = t.flush(); err != nil {
				break
			}
			segs := t.soft.segment(f)
			if segs == nil {
				t.drop(DropSegment)
				continue
			}
			for j := range segs {
				t.add(&segs[j], nil)
			}
			if err = t.flush(); err != nil {
				break
			}
			continue
		}
		if !CompleteChecksum(f) {
			t.drop(DropBadVnetHdr)
			continue
		}
		t.add(f, f)
	}
	if err == nil {
		err = t.flush()
	}
	if err != nil {
		return 0, t.err("write", err)
	}
	return len(frames), nil
}

func (t *TUN) add(f, owner *Frame) {
	t.wbufs = append(t.wbufs, f.Buf[f.Off:f.Off+f.Len])
	var h [ethHdrLen]byte
	copy(h[:], f.Buf[f.Off:])
	t.saved = append(t.saved, h)
	t.owner = append(t.owner, owner)
}

// flush writes the queued packets and restores the callers' Ethernet
// headers. Only a vanished or closed device is an error; other failures are
// counted as drops.
func (t *TUN) flush() error {
	if len(t.wbufs) == 0 {
		return nil
	}
	bytes := 0
	for _, b := range t.wbufs {
		bytes += len(b)
	}
	_, err := t.dev.Write(t.wbufs, tunOffset)
	for i, o := range t.owner {
		if o != nil {
			copy(o.Buf[o.Off:], t.saved[i][:])
		}
	}
	n := len(t.wbufs)
	clear(t.wbufs)
	clear(t.owner)
	t.wbufs, t.saved, t.owner = t.wbufs[:0], t.saved[:0], t.owner[:0]
	switch {
	case err == nil:
		t.tx(n, bytes)
	case errors.Is(err, os.ErrClosed), errors.Is(err, syscall.EBADFD), detached(t.dev.File()):
		return err
	case errors.Is(err, syscall.EIO):
		// The device is down; the package does not say which packets
		// failed, so count the whole batch.
		for range n {
			t.drop(DropLinkDown)
		}
	default:
		for range n {
			t.drop(DropTxError)
		}
	}
	return nil
}

// Close implements Port: it destroys the device.
func (t *TUN) Close() error {
	var err error
	t.once.Do(func() {
		t.closed.Store(true)
		err = t.dev.Close()
		t.events.Wait()
	})
	return err
}

var (
	_ Port          = (*TUN)(nil)
	_ Operationaler = (*TUN)(nil)
	_ Stater        = (*TUN)(nil)
)
