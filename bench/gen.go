package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"roam/internal/packet"
)

// GenOptions describes a generated capture. The zero value of each field
// means its default; the same options always give the same bytes.
//
// The capture looks as if taken on the inside segment: inside hosts talk
// through a router (RouterMAC) to remotes in the documentation ranges
// 198.51.100.0/24 and 203.0.113.0/24 (203.0.113.1, the replay's default
// public IP, is never a remote). Inbound frames are addressed to the inside
// hosts' private addresses, as a capture behind the NAT shows them.
type GenOptions struct {
	Seed uint64
	// Flows is the number of flows (default 1000).
	Flows int
	// Inside is the subnet of the inside hosts (default 10.0.0.0/16).
	// Hosts are numbered from the tenth address on, so the network
	// address and the gateway (the first address) are never hosts.
	Inside netip.Prefix
	// Hosts is the number of inside hosts (default min(Flows, 256)).
	Hosts int
	// Endpoints is the number of distinct inside (address, port) endpoints
	// (default min(Flows, 16384)). Flow i uses endpoint i mod Endpoints,
	// each endpoint talking to distinct remotes, so that PAT with
	// endpoint-independent mapping needs one public port per endpoint, not
	// per flow: 1M flows fit behind one public address.
	Endpoints int
	// Proto is "tcp", "udp" or "mix" (default: each flow TCP or UDP with
	// equal probability).
	Proto string
	// Rounds is the number of data exchanges per flow after its setup,
	// each one frame out and one frame in (default 1; negative means 0).
	Rounds int
	// Storm makes a new-flow storm: one frame per flow (a TCP SYN or the
	// first UDP datagram), nothing else.
	Storm bool
	// Size fixes the frame size on the wire, FCS included (64..1518); 0
	// means IMIX: 64, 594 and 1518 bytes in the ratio 7:4:1. Captured
	// frames omit the 4-byte FCS (60, 590 and 1514 bytes). TCP handshake
	// and pure ACK frames are always minimum-size.
	Size int
	// Burst is the number of flows whose frames follow each other in one
	// direction (default 64). Consecutive endpoints belong to one host in
	// runs of min(Burst, Endpoints/Hosts), so replay feeds batches of that
	// size.
	Burst int
	// Start is the first timestamp (default 2026-01-01T00:00:00Z) and Gap
	// the time between frames (default 1µs).
	Start time.Time
	Gap   time.Duration
}

// RouterMAC is the MAC of the router that generated captures show on the
// inside segment. Inside hosts have MACFromIPv4 of their address.
var RouterMAC = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}

// imix is the simple IMIX: frame sizes on the wire and their weights.
var imix = [...]struct{ size, weight int }{{64, 7}, {594, 4}, {1518, 1}}

// remotePorts are the remote ports flows use, cycled when an endpoint talks
// to more remotes than there are remote addresses.
var remotePorts = [...]uint16{443, 80, 53, 8443, 123, 22, 8080, 3478}

const (
	fcsLen   = 4
	minFrame = 60 // 64 on the wire without the FCS
	maxSize  = 1518
)

// withDefaults fills in the defaults and checks the options.
func (o GenOptions) withDefaults() (GenOptions, error) {
	if o.Flows == 0 {
		o.Flows = 1000
	}
	if o.Flows < 0 {
		return o, fmt.Errorf("flows %d: must be positive", o.Flows)
	}
	if !o.Inside.IsValid() {
		o.Inside = netip.MustParsePrefix("10.0.0.0/16")
	}
	if !o.Inside.Addr().Is4() {
		return o, fmt.Errorf("inside %s: must be an IPv4 prefix", o.Inside)
	}
	o.Inside = o.Inside.Masked()
	if o.Hosts == 0 {
		o.Hosts = min(o.Flows, 256)
	}
	if room := (1 << (32 - o.Inside.Bits())) - 11; o.Hosts < 1 || o.Hosts > room {
		return o, fmt.Errorf("hosts %d: inside %s holds 1 to %d hosts", o.Hosts, o.Inside, max(room, 0))
	}
	if o.Endpoints == 0 {
		o.Endpoints = min(o.Flows, 16384)
	}
	if o.Burst <= 0 {
		o.Burst = 64
	}
	if o.Endpoints < o.Hosts || o.Endpoints > o.Flows {
		return o, fmt.Errorf("endpoints %d: must be between hosts (%d) and flows (%d)", o.Endpoints, o.Hosts, o.Flows)
	}
	if (o.Endpoints+o.Hosts-1)/o.Hosts+max(o.Burst, 64) > 32768 {
		return o, fmt.Errorf("endpoints %d: more than 32768 ports per host with %d hosts", o.Endpoints, o.Hosts)
	}
	if per := (o.Flows + o.Endpoints - 1) / o.Endpoints; per > numRemotes*len(remotePorts) {
		return o, fmt.Errorf("flows %d: %d flows per endpoint, more than the %d remote endpoints; raise endpoints", o.Flows, per, numRemotes*len(remotePorts))
	}
	switch o.Proto {
	case "":
		o.Proto = "mix"
	case "tcp", "udp", "mix":
	default:
		return o, fmt.Errorf("proto %q: want tcp, udp or mix", o.Proto)
	}
	if o.Rounds == 0 {
		o.Rounds = 1
	}
	if o.Rounds < 0 {
		o.Rounds = 0
	}
	if o.Size != 0 && (o.Size < 64 || o.Size > maxSize) {
		return o, fmt.Errorf("size %d: want 64 to %d bytes (0 for IMIX)", o.Size, maxSize)
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if o.Gap <= 0 {
		o.Gap = time.Microsecond
	}
	return o, nil
}

// numRemotes is the number of remote addresses: 198.51.100.1-254 and
// 203.0.113.2-254.
const numRemotes = 254 + 253

func remoteAddr(i int) [4]byte {
	if i < 254 {
		return [4]byte{198, 51, 100, byte(1 + i)}
	}
	return [4]byte{203, 0, 113, byte(2 + i - 254)}
}

// GenFlow is one generated flow, seen from the inside.
type GenFlow struct {
	Proto      uint8 // 6 (TCP) or 17 (UDP)
	Inside     [4]byte
	InsidePort uint16
	Remote     [4]byte
	RemotePort uint16
	// seqOut and seqIn are the next TCP sequence numbers in each
	// direction.
	seqOut, seqIn uint32
}

// Generator produces the frames of a generated capture.
type Generator struct {
	o     GenOptions
	rng   *rand.Rand
	Flows []GenFlow
	ipID  uint16
}

// NewGenerator builds the flows of o.
func NewGenerator(o GenOptions) (*Generator, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	g := &Generator{o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x726f616d62656e63))} // "roambenc"
	g.Flows = make([]GenFlow, o.Flows)
	base := binary.BigEndian.Uint32(o.Inside.Addr().AsSlice())
	for i := range g.Flows {
		f := &g.Flows[i]
		e := i % o.Endpoints
		k := i / o.Endpoints
		// Runs of consecutive endpoints belong to one host, so that a
		// burst of frames comes from few hosts and replays in batches of
		// up to run frames per port.
		run := max(1, min(o.Burst, o.Endpoints/o.Hosts))
		h := (e / run) % o.Hosts
		binary.BigEndian.PutUint32(f.Inside[:], base+10+uint32(h))
		f.InsidePort = uint16(32768 + (e/(run*o.Hosts))*run + e%run)
		r := (e + k) % numRemotes
		f.Remote = remoteAddr(r)
		f.RemotePort = remotePorts[((e+k)/numRemotes)%len(remotePorts)]
		switch o.Proto {
		case "tcp":
			f.Proto = 6
		case "udp":
			f.Proto = 17
		default:
			f.Proto = 6
			if g.rng.IntN(2) == 1 {
				f.Proto = 17
			}
		}
		if f.Proto == 6 {
			f.seqOut, f.seqIn = g.rng.Uint32(), g.rng.Uint32()
		}
	}
	return g, nil
}

// Options returns the options with defaults filled in.
func (g *Generator) Options() GenOptions { return g.o }

// size picks the next frame size on the wire.
func (g *Generator) size() int {
	if g.o.Size != 0 {
		return g.o.Size
	}
	n := g.rng.IntN(12)
	for _, s := range imix {
		if n < s.weight {
			return s.size
		}
		n -= s.weight
	}
	return imix[0].size
}

// TCP flags.
const (
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

// Frame kinds of one flow.
const (
	kindOpen   = iota // SYN out, or the first UDP datagram out
	kindAccept        // SYN-ACK in, or the first UDP reply in
	kindAck           // the ACK that completes the handshake (TCP only)
	kindDataOut
	kindDataIn
)

// Run calls emit for every frame of the capture, in order, with its
// timestamp (ns since the epoch). The frame is valid until emit returns.
func (g *Generator) Run(emit func(ts int64, frame []byte) error) error {
	buf := make([]byte, maxSize)
	ts := g.o.Start.UnixNano()
	gap := int64(g.o.Gap)
	send := func(i, kind int) error {
		f := g.build(buf, &g.Flows[i], kind)
		err := emit(ts, f)
		ts += gap
		return err
	}
	n, b := len(g.Flows), g.o.Burst
	for lo := 0; lo < n; lo += b {
		hi := min(lo+b, n)
		phases := []int{kindOpen, kindAccept, kindAck}
		if g.o.Storm {
			phases = phases[:1]
		}
		for _, kind := range phases {
			for i := lo; i < hi; i++ {
				if kind == kindAck && g.Flows[i].Proto != 6 {
					continue
				}
				if err := send(i, kind); err != nil {
					return err
				}
			}
		}
	}
	if g.o.Storm {
		return nil
	}
	for r := 0; r < g.o.Rounds; r++ {
		for lo := 0; lo < n; lo += b {
			hi := min(lo+b, n)
			for _, kind := range []int{kindDataOut, kindDataIn} {
				for i := lo; i < hi; i++ {
					if err := send(i, kind); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// build writes the frame of the given kind for flow f into buf and advances
// the flow's sequence numbers.
func (g *Generator) build(buf []byte, f *GenFlow, kind int) []byte {
	out := kind == kindOpen || kind == kindAck || kind == kindDataOut
	var flags uint8
	l4len := 8 // UDP header
	if f.Proto == 6 {
		l4len = 20
		switch kind {
		case kindOpen:
			flags, l4len = tcpSYN, 24 // with an MSS option
		case kindAccept:
			flags, l4len = tcpSYN|tcpACK, 24
		case kindAck:
			flags = tcpACK
		default:
			flags = tcpACK | tcpPSH
		}
	}
	frameLen := minFrame
	if f.Proto == 17 || kind >= kindDataOut {
		frameLen = g.size() - fcsLen
	}
	payload := frameLen - 14 - 20 - l4len
	if flags&(tcpSYN) != 0 || flags == tcpACK {
		payload = 0
	}
	ipLen := 20 + l4len + payload
	fr := buf[:max(frameLen, 14+ipLen)]
	clear(fr)

	src, dst := f.Inside, f.Remote
	sport, dport := f.InsidePort, f.RemotePort
	smac, dmac := MACFromIPv4(f.Inside), RouterMAC
	ttl := uint8(64)
	if !out {
		src, dst, sport, dport, smac, dmac = dst, src, dport, sport, dmac, smac
		ttl = 52
	}
	copy(fr[0:6], dmac[:])
	copy(fr[6:12], smac[:])
	binary.BigEndian.PutUint16(fr[12:], etherTypeIPv4)

	ip := fr[14 : 14+ipLen]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen))
	g.ipID++
	binary.BigEndian.PutUint16(ip[4:], g.ipID)
	if f.Proto == 6 {
		ip[6] = 0x40 // DF
	}
	ip[8] = ttl
	ip[9] = f.Proto
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip[:20], 0))

	l4 := ip[20:]
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	for i := range payload {
		l4[l4len+i] = byte(i)
	}
	if f.Proto == 17 {
		binary.BigEndian.PutUint16(l4[4:], uint16(8+payload))
	} else {
		seq, ack := &f.seqOut, &f.seqIn
		if !out {
			seq, ack = ack, seq
		}
		binary.BigEndian.PutUint32(l4[4:], *seq)
		if flags&tcpACK != 0 {
			binary.BigEndian.PutUint32(l4[8:], *ack)
		}
		l4[12] = byte(l4len/4) << 4
		l4[13] = flags
		binary.BigEndian.PutUint16(l4[14:], 64240)
		if l4len == 24 {
			l4[20], l4[21] = 2, 4 // MSS 1460
			binary.BigEndian.PutUint16(l4[22:], 1460)
		}
		*seq += uint32(payload)
		if flags&tcpSYN != 0 {
			*seq++
		}
	}
	sum := pseudoSum(ip[12:16], ip[16:20], f.Proto, len(l4))
	cs := packet.Checksum(l4, sum)
	if f.Proto == 17 && cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(l4[packet.CsumOffset(f.Proto):], cs)
	return fr
}

// pseudoSum is packet.PseudoSum for addresses as bytes.
func pseudoSum(src, dst []byte, proto uint8, n int) uint32 {
	return packet.PseudoSum(binary.BigEndian.Uint32(src), binary.BigEndian.Uint32(dst), proto, n)
}

// Generate returns the frames of a generated capture, in memory.
func Generate(o GenOptions) (*Capture, error) {
	g, err := NewGenerator(o)
	if err != nil {
		return nil, err
	}
	c := &Capture{Name: "generated", Format: "generated", LinkType: LinkTypeEthernet, Dropped: map[string]uint64{}}
	var a arena
	err = g.Run(func(ts int64, f []byte) error {
		d := a.alloc(len(f))
		copy(d, f)
		c.Packets = append(c.Packets, Packet{Time: ts, Data: d, Len: len(d)})
		return nil
	})
	return c, err
}

// WritePcap writes a generated capture to w as a classic pcap file
// (microsecond timestamps, Ethernet, snap length 65535).
func WritePcap(w io.Writer, o GenOptions) error {
	g, err := NewGenerator(o)
	if err != nil {
		return err
	}
	if g.o.Gap%time.Microsecond != 0 {
		return errors.New("gap must be a whole number of microseconds for pcap")
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	pw := pcapgo.NewWriter(bw)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	err = g.Run(func(ts int64, f []byte) error {
		return pw.WritePacket(gopacket.CaptureInfo{
			Timestamp:     time.Unix(0, ts).UTC(),
			CaptureLength: len(f),
			Length:        len(f),
		}, f)
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}
