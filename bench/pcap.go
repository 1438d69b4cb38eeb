package bench

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket/pcapgo"
)

// Link types (LINKTYPE_* values as stored in pcap and pcapng files) that the
// loader converts to Ethernet.
const (
	LinkTypeNull     = 0   // BSD loopback, 4-byte address family in host order
	LinkTypeEthernet = 1   // Ethernet II
	LinkTypeRaw12    = 12  // DLT_RAW on most BSDs
	LinkTypeRaw14    = 14  // DLT_RAW on OpenBSD
	LinkTypeRaw      = 101 // LINKTYPE_RAW: raw IPv4 or IPv6
	LinkTypeLoop     = 108 // OpenBSD loopback, address family in network order
	LinkTypeLinuxSLL = 113 // Linux cooked capture v1
	LinkTypeIPv4     = 228 // raw IPv4
	LinkTypeIPv6     = 229 // raw IPv6
	LinkTypeSLL2     = 276 // Linux cooked capture v2
)

// MaxRecord is the largest captured length of one record the loader accepts
// (libpcap's MAXIMUM_SNAPLEN). Larger records mean a corrupt file.
const MaxRecord = 262144

// maxGunzip bounds the size of a gzip-compressed capture once uncompressed.
const maxGunzip = 1 << 30

// ErrUnreadable is wrapped by every error that says a file is not a capture
// the loader can read.
var ErrUnreadable = errors.New("unreadable capture")

// Per-packet verdicts that the loader decides before a frame reaches the
// switch.
const (
	// VerdictUnsupportedLinkType counts packets of a link type that cannot
	// be converted to Ethernet (PPP, 802.11, ...).
	VerdictUnsupportedLinkType = "unsupported_linktype"
	// VerdictBadLinkHeader counts packets too short for their link-layer
	// header, or whose network header is neither IPv4 nor IPv6 where the
	// link type leaves the protocol to it (raw IP, loopback).
	VerdictBadLinkHeader = "bad_link_header"
)

// Packet is one captured frame, normalised to Ethernet.
type Packet struct {
	// Time is the capture timestamp in nanoseconds since the Unix epoch.
	Time int64
	// Data is the Ethernet frame. Frames of other link types carry a
	// synthesised Ethernet header; MACs that the capture does not hold are
	// derived from the IPv4 addresses (see MACFromIPv4).
	Data []byte
	// Len is the frame's original length on the wire, as the capture
	// records it (Data may be shorter when the capture cut it).
	Len int
}

// Capture is a capture file loaded into memory.
type Capture struct {
	Name     string // the file name, as given
	Format   string // "pcap" or "pcapng" (with " (gzip)" when compressed)
	LinkType int    // link type of the file (pcap) or of its first interface
	Packets  []Packet
	// Dropped counts packets that the loader could not turn into Ethernet
	// frames, by verdict (VerdictUnsupportedLinkType, VerdictBadLinkHeader).
	Dropped map[string]uint64
	// Notes says what the loader noticed without failing, such as a
	// truncated last record.
	Notes []string
}

// Records returns the number of packet records in the file: loaded packets
// plus those the loader dropped.
func (c *Capture) Records() uint64 {
	n := uint64(len(c.Packets))
	for _, v := range c.Dropped {
		n += v
	}
	return n
}

// Duration returns the time from the first to the last packet.
func (c *Capture) Duration() time.Duration {
	if len(c.Packets) == 0 {
		return 0
	}
	return time.Duration(c.Packets[len(c.Packets)-1].Time - c.Packets[0].Time)
}

// ReadFile loads a pcap or pcapng file (optionally gzip-compressed).
func ReadFile(path string) (*Capture, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Read(path, data)
}

// Read loads a capture from data; name labels errors. The format is detected
// by its magic number. Read never panics: any input that is not a readable
// capture gives an error wrapping ErrUnreadable that names the file and the
// problem.
func Read(name string, data []byte) (c *Capture, err error) {
	defer func() {
		// The checks below are meant to keep pcapgo on safe ground; this
		// is the net under them.
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("%s: %w: reader panicked: %v", name, ErrUnreadable, r)
		}
	}()
	c = &Capture{Name: name, Dropped: map[string]uint64{}}
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w: gzip: %v", name, ErrUnreadable, err)
		}
		plain, err := io.ReadAll(io.LimitReader(zr, maxGunzip+1))
		if err != nil && len(plain) == 0 {
			return nil, fmt.Errorf("%s: %w: gzip: %v", name, ErrUnreadable, err)
		}
		if len(plain) > maxGunzip {
			return nil, fmt.Errorf("%s: %w: gzip: more than %d bytes uncompressed", name, ErrUnreadable, maxGunzip)
		}
		if err != nil {
			c.Notes = append(c.Notes, fmt.Sprintf("gzip stream cut short: %v", err))
		}
		if len(plain) >= 2 && plain[0] == 0x1f && plain[1] == 0x8b {
			return nil, fmt.Errorf("%s: %w: gzip inside gzip", name, ErrUnreadable)
		}
		c2, err := Read(name, plain)
		if err != nil {
			return nil, err
		}
		c2.Format += " (gzip)"
		c2.Notes = append(c.Notes, c2.Notes...)
		return c2, nil
	}
	if len(data) < 4 {
		return nil, fmt.Errorf("%s: %w: %d bytes is too short for a capture header", name, ErrUnreadable, len(data))
	}
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
		c.Format = "pcap"
		err = c.readPcap(data)
	case 0x0a0d0d0a:
		c.Format = "pcapng"
		err = c.readPcapng(data)
	default:
		return nil, fmt.Errorf("%s: %w: unknown magic number 0x%08x (not a pcap or pcapng file)", name, ErrUnreadable, binary.BigEndian.Uint32(data))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s: %v", name, ErrUnreadable, c.Format, err)
	}
	return c, nil
}

// readPcap reads a classic pcap file. The header is checked here (pcapgo
// keeps the link type in a uint8 and accepts reserved bits); the records are
// read with pcapgo.
func (c *Capture) readPcap(data []byte) error {
	if len(data) < 24 {
		return fmt.Errorf("truncated file header: %d bytes, want 24", len(data))
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if m := binary.LittleEndian.Uint32(data); m == 0xd4c3b2a1 || m == 0x4d3cb2a1 {
		bo = binary.BigEndian
	}
	major, minor := bo.Uint16(data[4:]), bo.Uint16(data[6:])
	if major != 2 || minor != 4 {
		return fmt.Errorf("unsupported version %d.%d (want 2.4)", major, minor)
	}
	ltField := bo.Uint32(data[20:])
	// The link type field: bits 0-15 link type, 16-25 reserved (zero),
	// 26-27 reserved, 28 F bit, 29-31 FCS length in 16-bit words.
	if ltField&0x0fff0000 != 0 {
		return fmt.Errorf("link type field 0x%08x has reserved bits set", ltField)
	}
	lt := int(ltField & 0xffff)
	fcs := 0
	if ltField&(1<<28) != 0 {
		fcs = 2 * int(ltField>>29)
	}
	c.LinkType = lt

	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	r.SetSnaplen(MaxRecord)
	a := arena{hint: len(data) + len(data)/2}
	c.Packets = make([]Packet, 0, min(len(data)/128+1, 1<<24))
	off := 24
	for i := 0; ; i++ {
		rest := len(data) - off
		if rest == 0 {
			return nil
		}
		if rest < 16 {
			c.Notes = append(c.Notes, fmt.Sprintf("truncated record header at offset %d (record %d): %d of 16 bytes", off, i, rest))
			return nil
		}
		caplen := int(bo.Uint32(data[off+8:]))
		if caplen <= MaxRecord && rest < 16+caplen {
			c.Notes = append(c.Notes, fmt.Sprintf("truncated last record at offset %d (record %d): %d of %d bytes", off, i, rest-16, caplen))
			return nil
		}
		buf, ci, err := r.ReadPacketData()
		if err != nil {
			return fmt.Errorf("record %d at offset %d: %v", i, off, err)
		}
		off += 16 + caplen
		if fcs > 0 && len(buf) >= fcs && ci.Length == ci.CaptureLength {
			buf = buf[:len(buf)-fcs]
		}
		c.add(&a, lt, ci.Timestamp.UnixNano(), buf, ci.Length)
	}
}

// add converts one record to Ethernet and appends it, or counts it as
// dropped.
func (c *Capture) add(a *arena, lt int, ts int64, rec []byte, wireLen int) {
	frame, verdict := toEthernet(a, lt, rec)
	if verdict != "" {
		c.Dropped[verdict]++
		return
	}
	if wireLen < len(frame) {
		wireLen = len(frame)
	}
	c.Packets = append(c.Packets, Packet{Time: ts, Data: frame, Len: wireLen})
}

// arena hands out frame buffers from large chunks, so that loading a capture
// costs a few allocations rather than one per packet.
type arena struct {
	chunk []byte
	hint  int // size of the first chunk (0: arenaChunk)
}

const arenaChunk = 4 << 20

func (a *arena) alloc(n int) []byte {
	if n > len(a.chunk) {
		size := arenaChunk
		if a.hint > 0 {
			size, a.hint = min(a.hint, arenaChunk), 0
		}
		if n > size {
			size = n
		}
		a.chunk = make([]byte, size)
	}
	b := a.chunk[:n:n]
	a.chunk = a.chunk[n:]
	return b
}

// Ethernet types used by the link-type conversion.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

// MACFromIPv4 returns the locally administered MAC 02:00:a:b:c:d that the
// loader and the generator give to an IPv4 host whose MAC a capture does not
// hold.
func MACFromIPv4(ip [4]byte) [6]byte {
	return [6]byte{0x02, 0x00, ip[0], ip[1], ip[2], ip[3]}
}

// placeholderMAC stands for a host that is neither known from the capture nor
// an IPv4 host.
var placeholderMAC = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00}

// toEthernet converts a record of link type lt into an Ethernet frame, or
// returns the verdict that drops it.
func toEthernet(a *arena, lt int, rec []byte) ([]byte, string) {
	switch lt {
	case LinkTypeEthernet:
		f := a.alloc(len(rec))
		copy(f, rec)
		return f, ""
	case LinkTypeRaw, LinkTypeRaw12, LinkTypeRaw14, LinkTypeIPv4, LinkTypeIPv6:
		return fromIP(a, rec, nil, nil)
	case LinkTypeNull, LinkTypeLoop:
		// The 4-byte address family is in the writer's byte order (NULL)
		// or network order (LOOP), and its values differ between systems
		// (AF_INET6 is 10, 24, 28 or 30); the IP version nibble decides.
		if len(rec) < 4 {
			return nil, VerdictBadLinkHeader
		}
		return fromIP(a, rec[4:], nil, nil)
	case LinkTypeLinuxSLL, LinkTypeSLL2:
		// SLL:  pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
		// SLL2: protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1)
		//       halen(1) addr(8)
		var pkttype, halen, proto int
		var addr, payload []byte
		if lt == LinkTypeLinuxSLL {
			if len(rec) < 16 {
				return nil, VerdictBadLinkHeader
			}
			pkttype = int(binary.BigEndian.Uint16(rec[0:]))
			halen = int(binary.BigEndian.Uint16(rec[4:]))
			addr, proto, payload = rec[6:14], int(binary.BigEndian.Uint16(rec[14:])), rec[16:]
		} else {
			if len(rec) < 20 {
				return nil, VerdictBadLinkHeader
			}
			proto = int(binary.BigEndian.Uint16(rec[0:]))
			pkttype, halen = int(rec[10]), int(rec[11])
			addr, payload = rec[12:20], rec[20:]
		}
		var src, dst *[6]byte
		if halen == 6 {
			src = (*[6]byte)(addr[:6])
		}
		switch pkttype {
		case 1: // broadcast
			dst = &[6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		case 2: // multicast
			dst = &[6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
		}
		if proto == etherTypeIPv4 || proto == etherTypeIPv6 {
			return fromIP(a, payload, src, dst)
		}
		// ARP and the rest carry no IP header to derive MACs from.
		if src == nil {
			src = &placeholderMAC
		}
		if dst == nil {
			dst = &placeholderMAC
		}
		f := a.alloc(14 + len(payload))
		copy(f[0:6], dst[:])
		copy(f[6:12], src[:])
		binary.BigEndian.PutUint16(f[12:], uint16(proto))
		copy(f[14:], payload)
		return f, ""
	}
	return nil, VerdictUnsupportedLinkType
}

// fromIP prepends an Ethernet header to an IP packet. MACs not given are
// derived from the IPv4 addresses.
func fromIP(a *arena, ip []byte, src, dst *[6]byte) ([]byte, string) {
	if len(ip) < 1 {
		return nil, VerdictBadLinkHeader
	}
	var et uint16
	switch ip[0] >> 4 {
	case 4:
		et = etherTypeIPv4
	case 6:
		et = etherTypeIPv6
	default:
		return nil, VerdictBadLinkHeader
	}
	s, d := placeholderMAC, placeholderMAC
	if et == etherTypeIPv4 && len(ip) >= 20 {
		s = MACFromIPv4([4]byte(ip[12:16]))
		d = MACFromIPv4([4]byte(ip[16:20]))
	}
	if src != nil {
		s = *src
	}
	if dst != nil {
		d = *dst
	}
	f := a.alloc(14 + len(ip))
	copy(f[0:6], d[:])
	copy(f[6:12], s[:])
	binary.BigEndian.PutUint16(f[12:], et)
	copy(f[14:], ip)
	return f, ""
}
