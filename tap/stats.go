package tap

import (
	"errors"
	"sync/atomic"
)

// ErrDeviceGone is returned (wrapped) by Read and Write when the device behind
// a port disappeared: the TAP or TUN device was deleted, its namespace went
// away, or the link an AF_PACKET socket was bound to was removed. The port is
// then useless; the switch marks it down, counts it, and reopens the spec when
// the device comes back.
var ErrDeviceGone = errors.New("device gone")

// ErrBadSpec is returned (wrapped, with the spec) by Open for a spec it cannot
// parse.
var ErrBadSpec = errors.New("bad port spec")

// Operationaler is implemented by ports that can tell whether their device is
// usable right now: it exists, its link is up, and (for stream ports) a peer
// is connected.
type Operationaler interface {
	Operational() bool
}

// Stater is implemented by every driver in this package.
type Stater interface {
	Stats() Stats
}

// DropReason says why a driver dropped a frame.
type DropReason uint8

// Drop reasons. The zero value is not used.
const (
	_              DropReason = iota
	DropNoPeer                // Write on a stream port with no peer connected
	DropOversize              // frame longer than MaxFrame, or than the buffer
	DropBadVnetHdr            // virtio_net_hdr inconsistent with the frame
	DropRunt                  // shorter than an Ethernet header
	DropLinkDown              // the kernel refused the frame: link down
	DropTxError               // the kernel refused the frame for another reason
	DropNotIP                 // a TUN port got a frame that is neither IPv4 nor IPv6
	DropSegment               // software segmentation failed (malformed super-frame)
	DropTruncated             // the kernel truncated a received frame
	DropPeerError             // a stream peer sent a bad length and was dropped
	DropQueueFull             // the peer's socket buffer was full (it stopped reading)
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	"", "no_peer", "oversize", "bad_vnet_hdr", "runt", "link_down",
	"tx_error", "not_ip", "segment", "truncated", "peer_error", "queue_full",
}

// String returns the reason's snake_case name, as used in metrics.
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Stats is a snapshot of a port's counters.
type Stats struct {
	RxFrames uint64 // frames handed to the data path by Read
	RxBytes  uint64
	TxFrames uint64 // frames accepted by the device in Write
	TxBytes  uint64
	Drops    [NumDropReasons]uint64 // indexed by DropReason
	// Reconnects counts peers accepted by a stream port after the first one;
	// for other ports it stays zero.
	Reconnects uint64
}

// Dropped returns the sum of all drop counters.
func (s Stats) Dropped() uint64 {
	var n uint64
	for _, d := range s.Drops {
		n += d
	}
	return n
}

// counters is the live, atomically updated form of Stats that drivers embed.
type counters struct {
	rxFrames, rxBytes atomic.Uint64
	txFrames, txBytes atomic.Uint64
	reconnects        atomic.Uint64
	drops             [NumDropReasons]atomic.Uint64
}

func (c *counters) rx(frames, bytes int) {
	c.rxFrames.Add(uint64(frames))
	c.rxBytes.Add(uint64(bytes))
}

func (c *counters) tx(frames, bytes int) {
	c.txFrames.Add(uint64(frames))
	c.txBytes.Add(uint64(bytes))
}

func (c *counters) drop(r DropReason) { c.drops[r].Add(1) }

func (c *counters) snapshot() Stats {
	s := Stats{
		RxFrames:   c.rxFrames.Load(),
		RxBytes:    c.rxBytes.Load(),
		TxFrames:   c.txFrames.Load(),
		TxBytes:    c.txBytes.Load(),
		Reconnects: c.reconnects.Load(),
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}
