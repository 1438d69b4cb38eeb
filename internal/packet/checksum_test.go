package packet_test

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/google/gopacket/layers"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

func TestSum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		init := r.Uint32() & 0xfffff
		var ib [4]byte
		binary.BigEndian.PutUint32(ib[:], init)
		want := packettest.Sum(ib[:], b)
		if got := packet.Sum(b, init); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Errorf("len %d: Sum got %#04x, want %#04x", n, got, want)
		}
	}
	for _, tc := range []struct {
		b    []byte
		want uint16
	}{
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0xffff},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0xff00},
		{[]byte{0x01}, 0x0100},
		{[]byte{0x80, 0x00, 0x80, 0x00}, 0x0001},
	} {
		if got := packet.Sum(tc.b, 0); got != tc.want {
			t.Errorf("Sum(%x): got %#x, want %#x", tc.b, got, tc.want)
		}
	}
}

// TestChecksumLengths checks Checksum at the lengths around each step of
// Add's loop (32, 8, 4, 2, 1 bytes), up to the largest IP datagram, on
// random bytes and on all ones (the sum that carries most).
func TestChecksumLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1499, 1500, 65535} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := packet.Checksum(b, 0), ^packettest.Sum(b); got != want {
			t.Errorf("len %d: got %#04x, want %#04x", n, got, want)
		}
		for i := range b {
			b[i] = 0xff
		}
		if got, want := packet.Checksum(b, 0), ^packettest.Sum(b); got != want {
			t.Errorf("len %d all ones: got %#04x, want %#04x", n, got, want)
		}
	}
}

// TestChecksumGopacket checks Checksum and PseudoSum against the checksums
// gopacket writes into the frames it serializes.
func TestChecksumGopacket(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec packettest.Spec
	}{
		{"tcp syn with options", packettest.Spec{Proto: 6, Src: apPriv, Dst: apRemote, TCPFlags: 2, Seq: 7, TCPOptions: []layers.TCPOption{
			{OptionType: 2, OptionLength: 4, OptionData: []byte{5, 0xb4}}, {OptionType: 1}, {OptionType: 3, OptionLength: 3, OptionData: []byte{7}}}}},
		{"tcp odd payload", tcpSpec(packet.TCPAck|packet.TCPPsh, 33)},
		{"udp", udpSpec(17)},
		{"udp empty", udpSpec(0)},
		{"icmp echo odd", packettest.Spec{Proto: 1, Src: apPriv, Dst: apRemote, ICMPType: 8, ICMPID: 3, Payload: []byte("abcde")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := packettest.Frame(tc.spec)
			ip := f[14:34]
			wantIP := binary.BigEndian.Uint16(ip[10:12])
			c := append([]byte(nil), ip...)
			c[10], c[11] = 0, 0
			if got := packet.Checksum(c, 0); got != wantIP {
				t.Errorf("IPv4 header: got %#04x, want %#04x", got, wantIP)
			}
			seg := append([]byte(nil), f[34:14+packet.IPv4(ip).TotalLen()]...)
			off := packet.CsumOffset(tc.spec.Proto)
			want := binary.BigEndian.Uint16(seg[off:])
			seg[off], seg[off+1] = 0, 0
			var init uint32
			if tc.spec.Proto != packet.ProtoICMP {
				init = packet.PseudoSum(packet.IPv4(ip).Src(), packet.IPv4(ip).Dst(), tc.spec.Proto, len(seg))
			}
			if got := packet.Checksum(seg, init); got != want {
				t.Errorf("L4: got %#04x, want %#04x", got, want)
			}
		})
	}
}

// TestUpdate is a property test: for random data with a valid checksum,
// changing a 16- or 32-bit aligned field and updating the checksum with
// Update16/Update32 gives a checksum that verifies, like a full
// recomputation does.
func TestUpdate(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		n := 6 + 2*r.IntN(40)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		switch r.IntN(8) { // stress edges: all zeros and all ones
		case 0:
			clear(b)
		case 1:
			for j := range b {
				b[j] = 0xff
			}
		}
		const cs = 0
		b[cs], b[cs+1] = 0, 0
		binary.BigEndian.PutUint16(b[cs:], ^packettest.Sum(b))
		pos := 2 + 2*r.IntN((n-4)/2)
		cur := binary.BigEndian.Uint16(b[cs:])
		if r.IntN(2) == 0 {
			old := binary.BigEndian.Uint16(b[pos:])
			nv := uint16(r.Uint32())
			if r.IntN(4) == 0 {
				nv = ^old
			}
			binary.BigEndian.PutUint16(b[pos:], nv)
			binary.BigEndian.PutUint16(b[cs:], packet.Update16(cur, old, nv))
		} else {
			if pos+4 > n {
				pos -= 2
			}
			old := binary.BigEndian.Uint32(b[pos:])
			nv := r.Uint32()
			binary.BigEndian.PutUint32(b[pos:], nv)
			binary.BigEndian.PutUint16(b[cs:], packet.Update32(cur, old, nv))
		}
		if s := packettest.Sum(b); s != 0xffff {
			t.Fatalf("iteration %d (%x): sum after update %#04x, want 0xffff", i, b, s)
		}
	}
}

// TestUpdatePartial checks that a partial (pseudo-header, uncomplemented)
// sum updated for an address change equals the partial sum recomputed.
func TestUpdatePartial(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 10000; i++ {
		src, dst, nsrc := r.Uint32(), r.Uint32(), r.Uint32()
		n := r.IntN(1500)
		ps := packet.Sum(nil, packet.PseudoSum(src, dst, 6, n))
		got := packet.UpdatePartial32(ps, src, nsrc)
		want := packet.Sum(nil, packet.PseudoSum(nsrc, dst, 6, n))
		if got != want && !(got == 0 && want == 0xffff) && !(got == 0xffff && want == 0) {
			t.Fatalf("UpdatePartial32(%#x, %#x -> %#x): got %#04x, want %#04x", ps, src, nsrc, got, want)
		}
		o16, n16 := uint16(r.Uint32()), uint16(r.Uint32())
		want16 := packet.Sum(nil, uint32(ps)+uint32(n16)+uint32(^o16))
		if got := packet.UpdatePartial16(ps, o16, n16); got != want16 && !(got == 0 && want16 == 0xffff) && !(got == 0xffff && want16 == 0) {
			t.Fatalf("UpdatePartial16(%#x, %#x -> %#x): got %#04x, want %#04x", ps, o16, n16, got, want16)
		}
	}
}

// TestAddChained checks that a running sum carried across slices (even
// lengths but the last), as tap's segmentation sums a pseudo-header and then
// a segment, equals the sum of the whole.
func TestAddChained(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 2, 12, 30, 32, 34, 64, 1460, 9000} {
		for _, m := range []int{0, 1, 7, 33, 1449} {
			a, b := make([]byte, n), make([]byte, m)
			for i := range a {
				a[i] = byte(r.Uint32())
			}
			for i := range b {
				b[i] = 0xff ^ byte(r.Uint32()&3)
			}
			want := packettest.Sum(a, b)
			got := packet.Fold(packet.Add(packet.Add(0, a), b))
			if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
				t.Errorf("%d+%d bytes: got %#04x, want %#04x", n, m, got, want)
			}
		}
	}
}
