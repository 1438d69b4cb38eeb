package tap

import "testing"

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
