package tap

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

func reportPPS(b *testing.B, packets int) {
	b.ReportMetric(float64(packets)/b.Elapsed().Seconds(), "pkts/s")
}

func BenchmarkSegmentTCP4(b *testing.B) {
	f := superFrame(pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, flags: 0x18, payload: pattern(65000)}, GSOTCPv4, 1448)
	out := NewFrames(64, Headroom+2048)
	b.ReportAllocs()
	b.SetBytes(int64(f.Len))
	segs := 0
	for b.Loop() {
		segs += Segment(&f, out)
	}
	reportPPS(b, segs)
}

func BenchmarkCompleteChecksum(b *testing.B) {
	p := pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(1448), partial: true}
	buf, g := p.build()
	f := frameOf(buf, g)
	b.ReportAllocs()
	b.SetBytes(int64(f.Len))
	n := 0
	for b.Loop() {
		f.GSO = g
		CompleteChecksum(&f)
		n++
	}
	reportPPS(b, n)
}

func BenchmarkDecodeVnetHdr(b *testing.B) {
	frame, _ := pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(3000)}.build()
	h := vnetHdr(1, GSOTCPv4, 0, 1448, 34, 16)
	var g GSO
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		decodeVnetHdr(h, frame, &g)
		n++
	}
	reportPPS(b, n)
}

// streamPair opens a stream port with a connected peer.
func streamPair(b testing.TB) (*Stream, net.Conn) {
	path := filepath.Join(b.TempDir(), "s.sock")
	s, err := OpenStream(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for !s.Operational() {
		time.Sleep(time.Millisecond)
	}
	return s, c
}

func smallFrames(n int) []Frame {
	fs := NewFrames(n, Headroom+MaxFrame)
	raw, _ := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(18)}.build() // 60 bytes
	for i := range fs {
		fs[i].Len = copy(fs[i].Buf[Headroom:], raw)
	}
	return fs
}

func BenchmarkStreamWrite(b *testing.B) {
	s, c := streamPair(b)
	go io.Copy(io.Discard, c)
	frames := smallFrames(64)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k, _ := s.Write(frames)
		n += k
	}
	reportPPS(b, n)
}

func BenchmarkStreamRead(b *testing.B) {
	s, c := streamPair(b)
	raw, _ := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(18)}.build()
	var chunk []byte
	for i := 0; i < 256; i++ {
		chunk = binary.BigEndian.AppendUint32(chunk, uint32(len(raw)))
		chunk = append(chunk, raw...)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	frames := NewFrames(64, Headroom+MaxFrame)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k, err := s.Read(frames)
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	reportPPS(b, n)
}

func TestNoAllocs(t *testing.T) {
	super := superFrame(pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(65000)}, GSOTCPv4, 1448)
	out := NewFrames(64, Headroom+2048)
	p := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(100), partial: true}
	pb, pg := p.build()
	partial := frameOf(pb, pg)
	h := make([]byte, vnetHdrLen)
	var g GSO
	var soft softGSO
	soft.segment(&super)
	s, c := streamPair(t)
	go io.Copy(io.Discard, c)
	frames := smallFrames(32)
	s.Write(frames) // grow the scratch space once

	tests := []struct {
		name string
		fn   func()
	}{
		{"Segment", func() { Segment(&super, out) }},
		{"CompleteChecksum", func() { partial.GSO = pg; CompleteChecksum(&partial) }},
		{"vnet header", func() { encodeVnetHdr(h, super.Bytes(), &super.GSO); decodeVnetHdr(h, super.Bytes(), &g) }},
		{"softGSO", func() { soft.segment(&super) }},
		{"Stream.Write", func() { s.Write(frames) }},
		{"Stream.Write super-frame", func() { s.Write([]Frame{super}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.fn); n != 0 {
				t.Errorf("got %v allocations per run, want 0", n)
			}
		})
	}
}
