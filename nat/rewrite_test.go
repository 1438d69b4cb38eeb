package nat

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/gopacket/layers"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

// spec builds a packettest.Spec for tuple k (ICMP: an echo request when
// k.SPort is set, else a reply with k.DPort).
func spec(k Tuple, payload []byte) packettest.Spec {
	s := packettest.Spec{Proto: k.Proto, Src: ap(k.Src, k.SPort), Dst: ap(k.Dst, k.DPort), Payload: payload,
		TCPFlags: packet.TCPAck | packet.TCPPsh, Seq: 0x01020304, Ack: 0x0a0b0c0d, ID: 0x4242}
	if k.Proto == icmp {
		s.ICMPType, s.ICMPID = packet.ICMPEcho, k.SPort
		if k.SPort == 0 {
			s.ICMPType, s.ICMPID = packet.ICMPEchoReply, k.DPort
		}
		s.Src, s.Dst = ap(k.Src, 0), ap(k.Dst, 0)
	}
	return s
}

func diff(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
	if err := packettest.Verify(got); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func TestRewrite(t *testing.T) {
	payload := []byte("hello, translated world!!")
	tests := []struct {
		name  string
		k, to Tuple
		mod   func(s *packettest.Spec)
	}{
		{"tcp snat", tup(tcp, privA, 40000, remote1, 443), tup(tcp, pub, 1234, remote1, 443), nil},
		{"tcp dnat", tup(tcp, remote1, 5555, eip, 80), tup(tcp, remote1, 5555, privC, 8080), nil},
		{"tcp both (hairpin)", tup(tcp, privA, 40000, eip, 80), tup(tcp, pub, 40000, privC, 80), nil},
		{"tcp with ip options", tup(tcp, privA, 40000, remote1, 443), tup(tcp, pub, 1, remote1, 443), func(s *packettest.Spec) {
			s.IPOptions = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
		}},
		{"udp snat", tup(udp, privA, 5353, remote1, 53), tup(udp, pub, 65535, remote1, 53), nil},
		{"udp dnat odd payload", tup(udp, remote1, 53, eip, 5353), tup(udp, remote1, 53, privA, 5353), func(s *packettest.Spec) { s.Payload = payload[:7] }},
		{"udp without checksum stays without", tup(udp, privA, 5353, remote1, 53), tup(udp, pub, 999, remote1, 53), func(s *packettest.Spec) { s.NoUDPSum = true }},
		{"icmp echo request", tup(icmp, privA, 777, remote1, 0), tup(icmp, pub, 31337, remote1, 0), nil},
		{"icmp echo reply", tup(icmp, remote1, 0, pub, 31337), tup(icmp, remote1, 0, privA, 777), nil},
		{"gre addresses only", tup(47, privA, 0, remote1, 0), tup(47, pub, 0, remote1, 0), nil},
		{"nothing to change", tup(udp, privA, 1, remote1, 2), tup(udp, privA, 1, remote1, 2), nil},
	}
	for _, tc := range tests {
		for _, ttl := range []bool{false, true} {
			name := tc.name
			if ttl {
				name += " with TTL"
			}
			t.Run(name, func(t *testing.T) {
				s, w := spec(tc.k, payload), spec(tc.to, payload)
				if tc.mod != nil {
					tc.mod(&s)
					tc.mod(&w)
				}
				if ttl {
					w.TTL = 63
				}
				f, want := packettest.Frame(s), packettest.Frame(w)
				p := parse(t, f)
				if k := TupleOf(p); k != tc.k {
					t.Fatalf("TupleOf: got %v, want %v", k, tc.k)
				}
				if ttl {
					RewriteTTL(f, p, tc.k, tc.to, false)
				} else {
					Rewrite(f, p, tc.k, tc.to, false)
				}
				diff(t, "rewritten", f, want)
			})
		}
	}
}

// TestRewriteUDPZeroResult checks that a rewrite whose new UDP checksum
// computes to 0 sends 0xffff (0 would mean "no checksum").
func TestRewriteUDPZeroResult(t *testing.T) {
	k := tup(udp, privA, 5353, remote1, 53)
	f := packettest.Frame(spec(k, []byte("abcd")))
	p := parse(t, f)
	cs := binary.BigEndian.Uint16(f[p.L4+6:])
	// Pick the new source port so that the checksum becomes 0: the sum
	// must grow by cs (one's complement).
	newPort := uint16(uint32(k.SPort) + uint32(cs))
	if uint32(k.SPort)+uint32(cs) > 0xffff {
		newPort++ // end-around carry
	}
	to := k
	to.SPort = newPort
	Rewrite(f, p, k, to, false)
	if got := binary.BigEndian.Uint16(f[p.L4+6:]); got != 0xffff {
		t.Errorf("checksum: got %#04x, want 0xffff", got)
	}
	if err := packettest.Verify(f); err != nil {
		t.Error(err)
	}
}

func TestRewriteFragments(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k, to Tuple
	}{
		{"udp", tup(udp, privA, 5353, remote1, 53), tup(udp, pub, 2000, remote1, 53)},
		{"tcp", tup(tcp, remote1, 80, eip, 40000), tup(tcp, remote1, 80, privC, 40000)},
		{"icmp echo", tup(icmp, privA, 7, remote1, 0), tup(icmp, pub, 8, remote1, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			big := bytes.Repeat([]byte("0123456789abcdef"), 20)
			frags := packettest.Fragment(packettest.Frame(spec(tc.k, big)), 96)
			want := packettest.Fragment(packettest.Frame(spec(tc.to, big)), 96)
			for i, f := range frags {
				p := parse(t, f)
				k := tc.k
				if i > 0 {
					// A later fragment has no ports: its key is the
					// addresses, as Frags carries them over.
					k.SPort, k.DPort = 0, 0
					if TupleOf(p) != k {
						t.Fatalf("fragment %d: TupleOf %v, want %v", i, TupleOf(p), k)
					}
				}
				to := tc.to
				if i > 0 {
					to.SPort, to.DPort = 0, 0
				}
				Rewrite(f, p, k, to, false)
				diff(t, "fragment", f, want[i])
			}
		})
	}
}

// TestRewritePartial checks NEEDS_CSUM frames: the L4 checksum field
// holds the pseudo-header sum, which must stay the sum over the new
// addresses, so that completing it gives a valid checksum.
func TestRewritePartial(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k, to Tuple
	}{
		{"tcp", tup(tcp, privA, 40000, remote1, 443), tup(tcp, pub, 1234, remote1, 443)},
		{"udp", tup(udp, remote1, 53, eip, 5353), tup(udp, remote1, 53, privA, 6000)},
		{"icmp", tup(icmp, privA, 7, remote1, 0), tup(icmp, pub, 9, remote1, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := packettest.Frame(spec(tc.k, []byte("partial checksum payload")))
			p := parse(t, f)
			off := p.L4 + packet.CsumOffset(tc.k.Proto)
			n := p.End - p.L4
			partial := func(k Tuple) uint16 {
				if k.Proto == icmp {
					return 0
				}
				return packettest.Sum(packettest.Pseudo(packet.Addr(k.Src).AsSlice(), packet.Addr(k.Dst).AsSlice(), k.Proto, n))
			}
			binary.BigEndian.PutUint16(f[off:], partial(tc.k))
			Rewrite(f, p, tc.k, tc.to, true)
			if got, want := binary.BigEndian.Uint16(f[off:]), partial(tc.to); got != want {
				t.Errorf("partial sum: got %#04x, want %#04x", got, want)
			}
			// Complete it as the NIC would.
			binary.BigEndian.PutUint16(f[off:], ^packettest.Sum(f[p.L4:p.End]))
			if err := packettest.Verify(f); err != nil {
				t.Errorf("completed: %v", err)
			}
			if s := packettest.Sum(f[14:p.L4]); s != 0xffff {
				t.Errorf("IPv4 header sum %#04x, want 0xffff", s)
			}
		})
	}
}

func TestRewriteError(t *testing.T) {
	tb := NewTable(Options{})
	// Make privA's port differ from its public port.
	mustCreate(t, tb, patSpec(tup(udp, privB, 40000, remote1, 9), 2), nil, t0)
	mustCreate(t, tb, patSpec(tup(tcp, privB, 40000, remote1, 9), 2), &Seg{Flags: packet.TCPSyn, WScale: -1}, t0)
	mustCreate(t, tb, patSpec(tup(icmp, privB, 777, remote1, 0), 2), nil, t0)

	type flowDef struct {
		sp  *Spec
		seg *Seg
	}
	udpOut := patSpec(tup(udp, privA, 40000, remote1, 53), 1)
	tcpOut := patSpec(tup(tcp, privA, 40000, remote1, 443), 1)
	echoOut := patSpec(tup(icmp, privA, 777, remote1, 0), 1)
	udpIn := natSpec(tup(udp, remote1, 1234, eip, 53), tup(udp, remote1, 1234, privC, 53), 3)
	tcpIn := natSpec(tup(tcp, remote2, 5555, eip, 80), tup(tcp, remote2, 5555, privC, 80), 3)
	udpInPAT := &Spec{Orig: tup(udp, remote2, 999, pub, 0), To: tup(udp, remote2, 999, privA, 40000), PATIn: true, Owner: 1}
	vs := map[*Spec]Verdict{}
	for _, fd := range []flowDef{{udpOut, nil}, {tcpOut, &Seg{Flags: packet.TCPSyn, WScale: -1}}, {echoOut, nil}, {udpIn, nil}, {tcpIn, &Seg{Flags: packet.TCPSyn, WScale: -1}}} {
		vs[fd.sp] = mustCreate(t, tb, fd.sp, fd.seg, t0)
	}
	udpInPAT.Orig.DPort = vs[udpOut].To.SPort
	vs[udpInPAT] = mustCreate(t, tb, udpInPAT, nil, t0)
	for sp, v := range vs {
		if sp.PATOut && v.To.SPort == sp.Orig.SPort {
			t.Fatalf("%v: port preserved, the test wants it changed", sp.Orig)
		}
	}
	payload := []byte("datagram that did not make it")
	big := bytes.Repeat([]byte("x"), 400)

	tests := []struct {
		name     string
		typ      uint8
		code     uint8
		rest     uint32
		from     uint32 // outer source on the wire
		sent     Tuple  // the offending datagram as it was on the wire (after translation)
		orig     Tuple  // the same datagram as its sender sent it (before translation)
		fromWant uint32 // outer source after translation
		quote    int    // bytes of the datagram quoted (0: all)
		frag     bool   // the quoted datagram is a first fragment
	}{
		{"port unreachable from the remote, PAT udp", 3, 3, 0, remote1, vs[udpOut].To, udpOut.Orig, remote1, 0, false},
		{"frag needed from a router, PAT udp", 3, 4, 1400, rtr, vs[udpOut].To, udpOut.Orig, rtr, 0, false},
		{"ttl exceeded from a router, 8 bytes quoted", 11, 0, 0, rtr, vs[udpOut].To, udpOut.Orig, rtr, 28, false},
		{"admin prohibited, PAT tcp whole", 3, 13, 0, rtr, vs[tcpOut].To, tcpOut.Orig, rtr, 0, false},
		{"ttl exceeded, PAT tcp 8 bytes", 11, 0, 0, rtr, vs[tcpOut].To, tcpOut.Orig, rtr, 28, false},
		{"host unreachable, PAT tcp 16 bytes (no checksum)", 3, 1, 0, rtr, vs[tcpOut].To, tcpOut.Orig, rtr, 36, false},
		{"ttl exceeded, PAT echo request", 11, 0, 0, rtr, vs[echoOut].To, echoOut.Orig, rtr, 0, false},
		{"frag needed about a first fragment", 3, 4, 576, rtr, vs[udpOut].To, udpOut.Orig, rtr, 0, true},
		{"inbound 1:1: ttl exceeded about the reply", 11, 0, 0, rtr, tcpIn.Orig.Reverse(), tcpIn.To.Reverse(), rtr, 0, false},
		{"inbound 1:1: the record's port unreachable", 3, 3, 0, privC, udpIn.To, udpIn.Orig, eip, 0, false},
		{"inbound 1:1: ttl exceeded from a private router", 11, 0, 0, packettest.Addr("10.0.0.9"), udpIn.To, udpIn.Orig, eip, 0, false},
		{"inbound through a PAT mapping: the host's port unreachable", 3, 3, 0, privA, udpInPAT.To, udpInPAT.Orig, pub, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl := payload
			if tc.frag {
				pl = big
			}
			emb := func(k Tuple) []byte {
				b := packettest.Frame(spec(k, pl))
				if tc.frag {
					b = packettest.Fragment(b, 256)[0]
				}
				return b[14:]
			}
			sentEmb, origEmb := emb(tc.sent), emb(tc.orig)
			f := packettest.ICMPError(tc.typ, tc.code, packet.Addr(tc.from), packet.Addr(tc.sent.Src), sentEmb, tc.quote, tc.rest)
			want := packettest.ICMPError(tc.typ, tc.code, packet.Addr(tc.fromWant), packet.Addr(tc.orig.Src), origEmb, tc.quote, tc.rest)
			if err := packettest.Verify(f); err != nil {
				t.Fatalf("built error: %v", err)
			}
			p := parse(t, f)
			if !p.IsError {
				t.Fatal("not parsed as an ICMP error")
			}
			if !ICMPChecksumValid(f, p) {
				t.Fatal("ICMPChecksumValid: false for a valid message")
			}
			ek := ErrorKey(p)
			if ek != tc.sent.Reverse() {
				t.Fatalf("ErrorKey: got %v, want %v", ek, tc.sent.Reverse())
			}
			v := tb.Peek(ek, t0+1)
			if !v.Found {
				t.Fatalf("Peek(%v): not found", ek)
			}
			RewriteError(f, p, ek, v.To)
			diff(t, "translated error", f, want)
			if !ICMPChecksumValid(f, parse(t, f)) {
				t.Error("ICMPChecksumValid: false after translation")
			}
		})
	}
	t.Run("errors do not refresh the flow", func(t *testing.T) {
		v := tb.Peek(vs[udpOut].To.Reverse(), t0+10)
		if v2 := tb.Peek(vs[udpOut].To.Reverse(), t0+121); v2.Found || !v.Found {
			t.Errorf("Peek: found at +10 %v, at +121 %v, want true false", v.Found, v2.Found)
		}
	})
	t.Run("corrupt ICMP checksum is detected", func(t *testing.T) {
		f := packettest.ICMPError(3, 3, packet.Addr(rtr), packet.Addr(pub), emb0(vs[udpOut].To), 0, 0)
		f[34+2] ^= 1
		if ICMPChecksumValid(f, parse(t, f)) {
			t.Error("ICMPChecksumValid: true for a corrupted message")
		}
	})
}

func emb0(k Tuple) []byte { return packettest.IP(spec(k, []byte("x"))) }

func TestSegOf(t *testing.T) {
	ws := func(v byte) layers.TCPOption {
		return layers.TCPOption{OptionType: 3, OptionLength: 3, OptionData: []byte{v}}
	}
	mss := layers.TCPOption{OptionType: 2, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}
	nop := layers.TCPOption{OptionType: 1}
	sack := layers.TCPOption{OptionType: 4, OptionLength: 2}
	ts := layers.TCPOption{OptionType: 8, OptionLength: 10, OptionData: make([]byte, 8)}
	for _, tc := range []struct {
		name    string
		flags   uint8
		opts    []layers.TCPOption
		payload int
		want    Seg
	}{
		{"syn with linux options", packet.TCPSyn, []layers.TCPOption{mss, sack, ts, nop, ws(7)}, 0, Seg{Flags: packet.TCPSyn, WScale: 7}},
		{"syn wscale 14 max", packet.TCPSyn, []layers.TCPOption{ws(14)}, 0, Seg{Flags: packet.TCPSyn, WScale: 14}},
		{"syn wscale clamped", packet.TCPSyn, []layers.TCPOption{ws(20)}, 0, Seg{Flags: packet.TCPSyn, WScale: 14}},
		{"syn without wscale", packet.TCPSyn, []layers.TCPOption{mss}, 0, Seg{Flags: packet.TCPSyn, WScale: -1}},
		{"syn wscale after EOL", packet.TCPSyn, []layers.TCPOption{{OptionType: 0}, nop, nop, ws(3)}, 0, Seg{Flags: packet.TCPSyn, WScale: -1}},
		{"ack ignores wscale", packet.TCPAck, []layers.TCPOption{ws(7)}, 10, Seg{Flags: packet.TCPAck, WScale: -1, Len: 10}},
		{"data", packet.TCPAck | packet.TCPPsh, nil, 100, Seg{Flags: packet.TCPAck | packet.TCPPsh, WScale: -1, Len: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := packettest.Spec{Proto: tcp, Src: ap(privA, 1), Dst: ap(remote1, 2), TCPFlags: tc.flags, Seq: 11, Ack: 22, Window: 333,
				TCPOptions: tc.opts, Payload: make([]byte, tc.payload)}
			f := packettest.Frame(s)
			p := parse(t, f)
			var got Seg
			if !SegOf(p, f, &got) {
				t.Fatal("SegOf: false")
			}
			want := tc.want
			want.Seq, want.Ack, want.Win = 11, 22, 333
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	t.Run("not tcp", func(t *testing.T) {
		f := packettest.Frame(spec(tup(udp, privA, 1, remote1, 2), nil))
		var s Seg
		if SegOf(parse(t, f), f, &s) {
			t.Error("SegOf(udp): true")
		}
	})
	t.Run("first fragment has unknown length", func(t *testing.T) {
		fr := packettest.Fragment(packettest.Frame(spec(tup(tcp, privA, 1, remote1, 2), make([]byte, 200))), 64)
		var s Seg
		if !SegOf(parse(t, fr[0]), fr[0], &s) || s.Len != 0 {
			t.Errorf("got %+v, want Len 0", s)
		}
	})
}

func TestWScaleOption(t *testing.T) {
	for _, tc := range []struct {
		opt  []byte
		want int8
	}{
		{nil, -1},
		{[]byte{3, 3, 7}, 7},
		{[]byte{1, 1, 3, 3, 2}, 2},
		{[]byte{2, 4, 5, 0xb4, 3, 3, 9}, 9},
		{[]byte{5, 1, 3, 3, 2}, -1},  // option length below 2
		{[]byte{5, 10, 3, 3, 2}, -1}, // option longer than the header
		{[]byte{3, 2, 3, 3, 4}, 4},   // wscale with a wrong length is skipped
		{[]byte{3}, -1},              // cut short
		{[]byte{0, 3, 3, 7}, -1},     // after the end of the list
		{[]byte{8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 15}, 14},
	} {
		if got := wscaleOption(tc.opt); got != tc.want {
			t.Errorf("wscaleOption(%x): got %d, want %d", tc.opt, got, tc.want)
		}
	}
}

func TestClampMSS(t *testing.T) {
	mss := func(v uint16) layers.TCPOption {
		return layers.TCPOption{OptionType: 2, OptionLength: 4, OptionData: []byte{byte(v >> 8), byte(v)}}
	}
	nop := layers.TCPOption{OptionType: 1}
	ws := layers.TCPOption{OptionType: 3, OptionLength: 3, OptionData: []byte{7}}
	for _, tc := range []struct {
		name    string
		flags   uint8
		opts    func(v uint16) []layers.TCPOption
		mss     uint16
		clamp   uint16
		changed bool
	}{
		{"syn 1460 to 1400", packet.TCPSyn, func(v uint16) []layers.TCPOption { return []layers.TCPOption{mss(v)} }, 1460, 1400, true},
		{"syn-ack 9000 to 1360", packet.TCPSyn | packet.TCPAck, func(v uint16) []layers.TCPOption { return []layers.TCPOption{mss(v), nop, ws} }, 9000, 1360, true},
		{"odd offset after one nop", packet.TCPSyn, func(v uint16) []layers.TCPOption { return []layers.TCPOption{nop, mss(v), nop, nop, nop} }, 1460, 1234, true},
		{"after window scale (odd)", packet.TCPSyn, func(v uint16) []layers.TCPOption { return []layers.TCPOption{ws, mss(v), nop} }, 65535, 1300, true},
		{"already small", packet.TCPSyn, func(v uint16) []layers.TCPOption { return []layers.TCPOption{mss(v)} }, 536, 1400, false},
		{"no mss option", packet.TCPSyn, func(uint16) []layers.TCPOption { return []layers.TCPOption{ws} }, 0, 1400, false},
		{"not a syn", packet.TCPAck, func(v uint16) []layers.TCPOption { return []layers.TCPOption{mss(v)} }, 1460, 1400, false},
	} {
		for _, partial := range []bool{false, true} {
			name := tc.name
			if partial {
				name += " partial"
			}
			t.Run(name, func(t *testing.T) {
				mk := func(v uint16) []byte {
					return packettest.Frame(packettest.Spec{Proto: tcp, Src: ap(privA, 1), Dst: ap(remote1, 2), TCPFlags: tc.flags, Seq: 5, TCPOptions: tc.opts(v)})
				}
				f := mk(tc.mss)
				p := parse(t, f)
				if partial {
					binary.BigEndian.PutUint16(f[p.L4+16:], 0x1234)
				}
				got := ClampMSS(packet.TCP(f[p.L4:p.End]), tc.clamp, partial)
				if got != tc.changed {
					t.Fatalf("changed: got %v, want %v", got, tc.changed)
				}
				want := mk(tc.mss)
				if tc.changed {
					want = mk(tc.clamp)
				}
				if partial {
					if !bytes.Equal(f[:p.L4+16], want[:p.L4+16]) || !bytes.Equal(f[p.L4+18:], want[p.L4+18:]) || binary.BigEndian.Uint16(f[p.L4+16:]) != 0x1234 {
						t.Errorf("partial: got %x, want %x with the checksum field untouched", f, want)
					}
					return
				}
				diff(t, "clamped", f, want)
			})
		}
	}
}
