package tap

// MaxFrame is the largest frame a port hands to the data path: a 64 KiB GSO
// super-frame plus its Ethernet header.
const MaxFrame = 65535 + 14 + 4

// Headroom is the space every frame buffer keeps before the frame, so that a
// driver can put a virtio-net header or a stream length prefix in front of the
// frame without copying it.
const Headroom = 16

// GSO describes a frame that the kernel (or the peer) handed over with
// offloads: a super-frame to be segmented and/or a partial checksum. The zero
// value means a plain frame whose checksums are complete.
type GSO struct {
	Type       uint8  // GSOType*
	NeedsCsum  bool   // the L4 checksum holds only the pseudo-header sum
	HdrLen     uint16 // Ethernet+IP+L4 header length
	Size       uint16 // segment payload size (MSS) when Type != GSONone
	CsumStart  uint16 // offset of the L4 header from the start of the frame
	CsumOffset uint16 // offset of the checksum field from CsumStart
}

// GSO types, as in virtio_net_hdr.gso_type.
const (
	GSONone  uint8 = 0
	GSOTCPv4 uint8 = 1
	GSOUDP   uint8 = 3
	GSOTCPv6 uint8 = 4
)

// Frame is one Ethernet frame in a batch. The frame is Buf[Off:Off+Len]; Buf
// is the backing buffer (at least Headroom+MaxFrame bytes for reads) that the
// data path reuses from batch to batch.
type Frame struct {
	Buf []byte
	Off int
	Len int
	GSO GSO
}

// Bytes returns the frame.
func (f *Frame) Bytes() []byte { return f.Buf[f.Off : f.Off+f.Len] }

// NewFrames allocates n frames with buffers of size bytes each, Off set to
// Headroom.
func NewFrames(n, size int) []Frame {
	fs := make([]Frame, n)
	for i := range fs {
		fs[i].Buf = make([]byte, size)
		fs[i].Off = Headroom
	}
	return fs
}

// Port is where frames enter and leave roam: a TAP device, an existing link,
// a QEMU stream socket, an uplink, or an in-memory twin (tap/memport).
//
// Read blocks until at least one frame is available and fills frames[0:n]:
// for each, the driver writes the frame at Buf[Off:] (it may move Off within
// the headroom) and sets Len and GSO. Write sends frames[0:n] and returns when
// the buffers may be reused. Read and Write may be called concurrently with
// each other, but each from one goroutine at a time. Close makes a blocked
// Read return an error wrapping ErrClosed.
type Port interface {
	Name() string
	Read(frames []Frame) (n int, err error)
	Write(frames []Frame) (n int, err error)
	Close() error
}
