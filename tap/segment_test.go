package tap

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func superFrame(p pktSpec, typ uint8, mss uint16) Frame {
	p.partial = true
	b, g := p.build()
	g.Type = typ
	g.Size = mss
	_, l4, proto, _, _ := l4Info(b)
	g.HdrLen = uint16(l4 + l4HdrLen(b, l4, proto))
	return frameOf(b, g)
}

func TestSegment(t *testing.T) {
	tests := []struct {
		name string
		p    pktSpec
		typ  uint8
		mss  uint16
		want int
	}{
		{"tcp4 64k", pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 40000, dport: 80, seq: 0xfffff000, flags: 0x18 | 0x01 | 0x80, id: 0xfffe, payload: pattern(65000)}, GSOTCPv4, 1448, 45},
		{"tcp4 options exact", pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, seq: 7, flags: 0x10, tcpOpts: 12, payload: pattern(1448 * 3)}, GSOTCPv4, 1448, 3},
		{"tcp4 one short", pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, flags: 0x18, payload: pattern(100)}, GSOTCPv4, 1448, 1},
		{"tcp6", pktSpec{v6: true, proto: protoTCP, src: ip6A, dst: ip6B, sport: 1, dport: 2, seq: 99, flags: 0x18, payload: pattern(30000)}, GSOTCPv6, 1428, 22},
		{"uso4", pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 5000, dport: 6000, id: 10, payload: pattern(10000)}, GSOUDPL4, 1472, 7},
		{"uso6", pktSpec{v6: true, proto: protoUDP, src: ip6A, dst: ip6B, sport: 5000, dport: 6000, payload: pattern(5000)}, GSOUDPL4, 1000, 5},
		{"ufo4", pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 5000, dport: 6000, id: 77, payload: pattern(4000)}, GSOUDP, 1480, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := superFrame(tc.p, tc.typ, tc.mss)
			orig := append([]byte(nil), f.Bytes()...)
			out := NewFrames(64, Headroom+2000)
			n := Segment(&f, out)
			if n != tc.want {
				t.Fatalf("got %d segments, want %d", n, tc.want)
			}
			if !bytes.Equal(f.Bytes(), orig) {
				t.Error("Segment changed its input")
			}
			_, l4, proto, v6, _ := l4Info(orig)
			hl := l4HdrLen(orig, l4, proto)
			var payload []byte
			for i := 0; i < n; i++ {
				s := out[i].Bytes()
				if out[i].GSO != (GSO{}) {
					t.Errorf("segment %d: got GSO %+v, want zero", i, out[i].GSO)
				}
				if err := checkFrame(s); err != nil {
					t.Errorf("segment %d: %v", i, err)
				}
				if tc.typ == GSOUDP {
					fo := binary.BigEndian.Uint16(s[ethHdrLen+6:])
					if got, want := int(fo&0x1fff)*8, len(payload); got != want {
						t.Errorf("fragment %d: got offset %d, want %d", i, got, want)
					}
					if mf := fo&0x2000 != 0; mf != (i != n-1) {
						t.Errorf("fragment %d: got MF %v, want %v", i, mf, i != n-1)
					}
					if got := binary.BigEndian.Uint16(s[ethHdrLen+4:]); got != tc.p.id {
						t.Errorf("fragment %d: got id %d, want %d", i, got, tc.p.id)
					}
					payload = append(payload, s[l4:]...)
					continue
				}
				if got, max := len(s)-l4-hl, int(tc.mss); got > max {
					t.Errorf("segment %d: payload %d bytes, over the MSS %d", i, got, max)
				}
				if !v6 {
					if got, want := binary.BigEndian.Uint16(s[ethHdrLen+4:]), tc.p.id+uint16(i); got != want {
						t.Errorf("segment %d: got IP id %d, want %d", i, got, want)
					}
				}
				if proto == protoTCP {
					if got, want := binary.BigEndian.Uint32(s[l4+4:]), tc.p.seq+uint32(len(payload)); got != want {
						t.Errorf("segment %d: got seq %d, want %d", i, got, want)
					}
					fl := s[l4+13]
					last, first := i == n-1, i == 0
					if (fl&0x01 != 0) != (last && tc.p.flags&0x01 != 0) || (fl&0x08 != 0) != (last && tc.p.flags&0x08 != 0) {
						t.Errorf("segment %d: got flags %#02x: FIN/PSH belong on the last segment only", i, fl)
					}
					if (fl&0x80 != 0) != (first && tc.p.flags&0x80 != 0) {
						t.Errorf("segment %d: got flags %#02x: CWR belongs on the first segment only", i, fl)
					}
				}
				payload = append(payload, s[l4+hl:]...)
			}
			want := tc.p.payload
			if tc.typ == GSOUDP {
				// The reassembled IP payload is the UDP datagram with its
				// checksum completed.
				p := tc.p
				p.partial = false
				full, _ := p.build()
				want = full[l4:]
			}
			if !bytes.Equal(payload, want) {
				t.Errorf("reassembled payload differs (%d bytes, want %d)", len(payload), len(want))
			}
		})
	}
}

func TestSegmentRejects(t *testing.T) {
	tcp := pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(5000)}
	tests := []struct {
		name string
		f    func() Frame
		out  int
		size int
	}{
		{"out too short", func() Frame { return superFrame(tcp, GSOTCPv4, 1000) }, 4, 2000},
		{"buffers too small", func() Frame { return superFrame(tcp, GSOTCPv4, 1000) }, 8, 500},
		{"size zero", func() Frame { return superFrame(tcp, GSOTCPv4, 0) }, 8, 2000},
		{"type mismatch", func() Frame { return superFrame(tcp, GSOTCPv6, 1000) }, 8, 2000},
		{"udp as tcp", func() Frame {
			u := tcp
			u.proto = protoUDP
			return superFrame(u, GSOTCPv4, 1000)
		}, 8, 2000},
		{"bad ip length", func() Frame {
			f := superFrame(tcp, GSOTCPv4, 1000)
			f.Bytes()[ethHdrLen+3]++
			return f
		}, 8, 2000},
		{"ufo v6", func() Frame {
			u := tcp
			u.proto, u.v6, u.src, u.dst = protoUDP, true, ip6A, ip6B
			return superFrame(u, GSOUDP, 1000)
		}, 8, 2000},
		{"not ip", func() Frame {
			f := superFrame(tcp, GSOTCPv4, 1000)
			f.Bytes()[12] = 0x88
			return f
		}, 8, 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f()
			if n := Segment(&f, NewFrames(tc.out, tc.size)); n != 0 {
				t.Errorf("got %d segments, want 0", n)
			}
		})
	}
}

func TestSegmentPlain(t *testing.T) {
	p := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(200), partial: true}
	b, g := p.build()
	f := frameOf(b, g)
	out := NewFrames(1, Headroom+MaxFrame)
	if n := Segment(&f, out); n != 1 {
		t.Fatalf("got %d segments, want 1", n)
	}
	if err := checkFrame(out[0].Bytes()); err != nil {
		t.Error(err)
	}
	if !f.GSO.NeedsCsum {
		t.Error("Segment changed its input's GSO")
	}
}

func TestSoftGSO(t *testing.T) {
	var s softGSO
	f := superFrame(pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(65000)}, GSOTCPv4, 536)
	segs := s.segment(&f)
	if len(segs) != (65000+535)/536 {
		t.Fatalf("got %d segments, want %d", len(segs), (65000+535)/536)
	}
	for i := range segs {
		if err := checkFrame(segs[i].Bytes()); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}
	f = superFrame(pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(65000)}, GSOTCPv4, 8)
	if segs := s.segment(&f); segs != nil {
		t.Errorf("got %d segments of 8 bytes, want a refusal (over the scratch space)", len(segs))
	}
}

func FuzzSegment(f *testing.F) {
	for _, tc := range []struct {
		p   pktSpec
		typ uint8
		mss uint16
	}{
		{pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, flags: 0x19, payload: pattern(3000)}, GSOTCPv4, 1000},
		{pktSpec{v6: true, proto: protoTCP, src: ip6A, dst: ip6B, sport: 1, dport: 2, payload: pattern(3000)}, GSOTCPv6, 1000},
		{pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(3000)}, GSOUDPL4, 1000},
		{pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(3000)}, GSOUDP, 1000},
	} {
		fr := superFrame(tc.p, tc.typ, tc.mss)
		f.Add(fr.Bytes(), tc.typ, tc.mss, true)
	}
	out := NewFrames(128, Headroom+4096)
	f.Fuzz(func(t *testing.T, b []byte, typ uint8, mss uint16, partial bool) {
		if len(b) > MaxFrame {
			return
		}
		fr := frameOf(b, GSO{Type: typ, Size: mss})
		if partial {
			if _, l4, proto, _, ok := l4Info(b); ok {
				fr.GSO.NeedsCsum, fr.GSO.CsumStart, fr.GSO.CsumOffset = true, uint16(l4), csumOffset(proto)
			}
		}
		n := Segment(&fr, out)
		if n < 0 || n > len(out) {
			t.Fatalf("got %d segments for %d out frames", n, len(out))
		}
		if typ == GSONone {
			return
		}
		total := 0
		for i := 0; i < n; i++ {
			s := out[i].Bytes()
			if err := checkFrame(s); err != nil {
				t.Fatalf("segment %d of %d: %v", i, n, err)
			}
			_, l4, _, _, _ := l4Info(s)
			total += len(s) - l4
		}
		if n > 0 && (typ == GSOTCPv4 || typ == GSOTCPv6 || typ == GSOUDPL4) {
			_, l4, proto, _, _ := l4Info(b)
			hl := l4HdrLen(b, l4, proto)
			if got, want := total-n*hl, len(b)-l4-hl; got != want {
				t.Fatalf("segments carry %d payload bytes, want %d", got, want)
			}
		}
	})
}
