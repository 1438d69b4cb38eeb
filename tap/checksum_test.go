package tap

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// refChecksum is RFC 1071's checksum, word by word.
func refChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func TestChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1499, 1500, 65535} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := Checksum(b), refChecksum(b); got != want {
			t.Errorf("len %d: got %#04x, want %#04x", n, got, want)
		}
		for i := range b {
			b[i] = 0xff
		}
		if got, want := Checksum(b), refChecksum(b); got != want {
			t.Errorf("len %d all ones: got %#04x, want %#04x", n, got, want)
		}
	}
}

func TestCompleteChecksum(t *testing.T) {
	tests := []struct {
		name string
		p    pktSpec
	}{
		{"tcp4", pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, flags: 0x18, payload: pattern(1000)}},
		{"udp4 odd", pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(333)}},
		{"tcp6", pktSpec{v6: true, proto: protoTCP, src: ip6A, dst: ip6B, sport: 1, dport: 2, payload: pattern(1400)}},
		{"udp6 empty", pktSpec{v6: true, proto: protoUDP, src: ip6A, dst: ip6B, sport: 1, dport: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			full, _ := tc.p.build()
			p := tc.p
			p.partial = true
			b, g := p.build()
			f := frameOf(b, g)
			if !CompleteChecksum(&f) {
				t.Fatal("CompleteChecksum failed")
			}
			if f.GSO != (GSO{}) {
				t.Errorf("got GSO %+v after completion, want zero", f.GSO)
			}
			if string(f.Bytes()) != string(full) {
				t.Errorf("completed frame differs from one built with a full checksum")
			}
			if err := checkFrame(f.Bytes()); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("bad offsets", func(t *testing.T) {
		b, _ := tests[0].p.build()
		f := frameOf(b, GSO{NeedsCsum: true, CsumStart: uint16(len(b) - 1), CsumOffset: 16})
		if CompleteChecksum(&f) {
			t.Error("got true for a checksum field past the frame, want false")
		}
		f = frameOf(b, GSO{NeedsCsum: true, CsumStart: 4})
		if CompleteChecksum(&f) {
			t.Error("got true for CsumStart inside the Ethernet header, want false")
		}
	})
}
