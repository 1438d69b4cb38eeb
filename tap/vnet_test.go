package tap

import (
	"encoding/binary"
	"testing"
)

func vnetHdr(flags, typ uint8, hdrLen, size, start, off uint16) []byte {
	h := make([]byte, vnetHdrLen)
	h[0], h[1] = flags, typ
	binary.LittleEndian.PutUint16(h[2:], hdrLen)
	binary.LittleEndian.PutUint16(h[4:], size)
	binary.LittleEndian.PutUint16(h[6:], start)
	binary.LittleEndian.PutUint16(h[8:], off)
	return h
}

func TestDecodeVnetHdr(t *testing.T) {
	tcp4, _ := pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, tcpOpts: 12, payload: pattern(3000)}.build()
	tcp6, _ := pktSpec{v6: true, proto: protoTCP, src: ip6A, dst: ip6B, sport: 1, dport: 2, payload: pattern(3000)}.build()
	udp4, _ := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(3000)}.build()
	tests := []struct {
		name  string
		h     []byte
		frame []byte
		want  GSO
		drop  DropReason
	}{
		{"plain", vnetHdr(0, 0, 0, 0, 0, 0), tcp4, GSO{}, 0},
		{"data valid", vnetHdr(vnetFlagDataValid, 0, 0, 0, 0, 0), tcp4, GSO{}, 0},
		{"partial", vnetHdr(1, 0, 0, 0, 34, 16), tcp4, GSO{NeedsCsum: true, CsumStart: 34, CsumOffset: 16}, 0},
		// hdr_len from the kernel may be the linear length: it is recomputed.
		{"tso4", vnetHdr(1, GSOTCPv4, 1514, 1448, 34, 16), tcp4, GSO{Type: GSOTCPv4, NeedsCsum: true, HdrLen: 34 + 32, Size: 1448, CsumStart: 34, CsumOffset: 16}, 0},
		{"tso4 ecn", vnetHdr(1, GSOTCPv4|vnetGSOECN, 66, 1448, 34, 16), tcp4, GSO{Type: GSOTCPv4, NeedsCsum: true, HdrLen: 66, Size: 1448, CsumStart: 34, CsumOffset: 16}, 0},
		{"tso6", vnetHdr(1, GSOTCPv6, 74, 1428, 54, 16), tcp6, GSO{Type: GSOTCPv6, NeedsCsum: true, HdrLen: 74, Size: 1428, CsumStart: 54, CsumOffset: 16}, 0},
		{"uso", vnetHdr(1, GSOUDPL4, 42, 1472, 34, 6), udp4, GSO{Type: GSOUDPL4, NeedsCsum: true, HdrLen: 42, Size: 1472, CsumStart: 34, CsumOffset: 6}, 0},
		{"tso without csum", vnetHdr(0, GSOTCPv4, 0, 1448, 0, 0), tcp4, GSO{Type: GSOTCPv4, HdrLen: 66, Size: 1448, CsumStart: 34, CsumOffset: 16}, 0},
		{"csum past end", vnetHdr(1, 0, 0, 0, 3000, 400), tcp4, GSO{}, DropBadVnetHdr},
		{"csum in ethernet", vnetHdr(1, 0, 0, 0, 2, 0), tcp4, GSO{}, DropBadVnetHdr},
		{"unknown type", vnetHdr(1, 2, 0, 1448, 34, 16), tcp4, GSO{}, DropBadVnetHdr},
		{"tso4 on v6", vnetHdr(1, GSOTCPv4, 0, 1448, 54, 16), tcp6, GSO{}, DropBadVnetHdr},
		{"tso on udp", vnetHdr(1, GSOTCPv4, 0, 1448, 34, 6), udp4, GSO{}, DropBadVnetHdr},
		{"tso size 0", vnetHdr(1, GSOTCPv4, 0, 0, 34, 16), tcp4, GSO{}, DropBadVnetHdr},
		{"tso wrong start", vnetHdr(1, GSOTCPv4, 0, 1448, 38, 12), tcp4, GSO{}, DropBadVnetHdr},
		{"tso runt", vnetHdr(1, GSOTCPv4, 0, 1448, 34, 16), tcp4[:40], GSO{}, DropBadVnetHdr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g GSO
			if r := decodeVnetHdr(tc.h, tc.frame, &g); r != tc.drop {
				t.Fatalf("got drop %v, want %v", r, tc.drop)
			}
			if g != tc.want {
				t.Errorf("got %+v, want %+v", g, tc.want)
			}
		})
	}
}

func TestEncodeVnetHdr(t *testing.T) {
	b, _ := pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, flags: 0x80 | 0x10, payload: pattern(3000)}.build()
	g := GSO{Type: GSOTCPv4, NeedsCsum: true, Size: 1448, CsumStart: 34, CsumOffset: 16}
	h := make([]byte, vnetHdrLen)
	encodeVnetHdr(h, b, &g)
	want := vnetHdr(1, GSOTCPv4|vnetGSOECN, 54, 1448, 34, 16)
	if string(h) != string(want) {
		t.Errorf("got % x, want % x (hdr_len computed, ECN from CWR)", h, want)
	}
	var back GSO
	if r := decodeVnetHdr(h, b, &back); r != 0 {
		t.Fatalf("decoding our own header: drop %v", r)
	}
	g.HdrLen = 54
	if back != g {
		t.Errorf("round trip: got %+v, want %+v", back, g)
	}
}

func TestSetPartial(t *testing.T) {
	p := pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(3000)}
	full, _ := p.build()
	p.partial = true
	want, wantG := p.build()
	g := GSO{Type: GSOTCPv4, Size: 1448}
	if !setPartial(full, &g) {
		t.Fatal("setPartial failed")
	}
	wantG.Type, wantG.Size = GSOTCPv4, 1448
	if g != wantG {
		t.Errorf("got %+v, want %+v", g, wantG)
	}
	if string(full) != string(want) {
		t.Error("checksum field does not hold the pseudo-header sum")
	}
}

func FuzzVnetHdr(f *testing.F) {
	tcp4, _ := pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(200)}.build()
	udp6, _ := pktSpec{v6: true, proto: protoUDP, src: ip6A, dst: ip6B, sport: 1, dport: 2, payload: pattern(200)}.build()
	f.Add(vnetHdr(1, GSOTCPv4, 54, 100, 34, 16), tcp4)
	f.Add(vnetHdr(1, GSOUDPL4, 62, 100, 54, 6), udp6)
	f.Add(vnetHdr(1, 0, 0, 0, 34, 16), tcp4)
	f.Fuzz(func(t *testing.T, h, b []byte) {
		if len(h) < vnetHdrLen {
			return
		}
		var g GSO
		if decodeVnetHdr(h, b, &g) != 0 {
			if g != (GSO{}) {
				t.Fatalf("dropped frame left GSO %+v", g)
			}
			return
		}
		if g.NeedsCsum && (int(g.CsumStart) < ethHdrLen || int(g.CsumStart)+int(g.CsumOffset)+2 > len(b)) {
			t.Fatalf("accepted checksum offsets %d+%d outside a %d-byte frame", g.CsumStart, g.CsumOffset, len(b))
		}
		if g.Type != GSONone {
			if int(g.HdrLen) > len(b) || g.HdrLen <= g.CsumStart || g.Size == 0 {
				t.Fatalf("accepted %+v for a %d-byte frame", g, len(b))
			}
			// What we accept, we can encode back to the same meaning.
			h2 := make([]byte, vnetHdrLen)
			g2 := g
			encodeVnetHdr(h2, b, &g2)
			var back GSO
			if r := decodeVnetHdr(h2, b, &back); r != 0 || (g.NeedsCsum && back != g) {
				t.Fatalf("round trip of %+v: got %+v, drop %v", g, back, r)
			}
		}
	})
}
