package nat

import (
	"bytes"
	"encoding/binary"
	"testing"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

func rewriteSeeds() [][]byte {
	payload := []byte("seed payload")
	frags := packettest.Fragment(packettest.Frame(spec(tup(udp, privA, 1, remote1, 2), bytes.Repeat(payload, 10))), 48)
	udpNo := spec(tup(udp, privA, 5, remote1, 6), payload)
	udpNo.NoUDPSum = true
	return [][]byte{
		packettest.Frame(spec(tup(tcp, privA, 40000, remote1, 443), payload)),
		packettest.Frame(spec(tup(udp, privA, 5353, remote1, 53), payload)),
		packettest.Frame(udpNo),
		packettest.Frame(spec(tup(icmp, privA, 7, remote1, 0), payload)),
		packettest.Frame(spec(tup(icmp, remote1, 0, pub, 7), payload)),
		frags[0], frags[1],
		packettest.ICMPError(3, 3, packet.Addr(rtr), packet.Addr(pub), packettest.IP(spec(tup(udp, pub, 9, remote1, 53), payload)), 0, 0),
		packettest.ICMPError(11, 0, packet.Addr(rtr), packet.Addr(pub), packettest.IP(spec(tup(tcp, pub, 9, remote1, 53), payload)), 28, 0),
		packettest.ICMPError(3, 4, packet.Addr(rtr), packet.Addr(pub), packettest.IP(spec(tup(icmp, pub, 9, remote1, 0), payload)), 0, 1400),
	}
}

// FuzzRewrite parses an arbitrary frame, rewrites it (or, for an ICMP
// error, its embedded datagram) into a random tuple, and checks the result
// parses again with the new tuple and that every checksum that verified
// before still does.
func FuzzRewrite(f *testing.F) {
	for i, b := range rewriteSeeds() {
		f.Add(b, uint32(0xcb007101)+uint32(i), uint32(0x0a000001), uint16(1234), uint16(80))
	}
	f.Fuzz(func(t *testing.T, frame []byte, src, dst uint32, sport, dport uint16) {
		var p packet.Parsed
		if packet.Parse(frame, &p) != packet.ReasonNone || p.EthType != packet.EtherTypeIPv4 {
			return
		}
		before := packettest.Verify(frame)
		k := TupleOf(&p)
		to := Tuple{Src: src, Dst: dst, Proto: k.Proto}
		if p.IsError {
			ek := ErrorKey(&p)
			to = Tuple{Src: src, Dst: dst, SPort: sport, DPort: dport, Proto: ek.Proto}
			if ek.SPort == 0 {
				to.SPort = 0
			}
			if ek.DPort == 0 {
				to.DPort = 0
			}
			if p.Inner.L4 == 0 || ek.Proto == icmp || (ek.Proto != tcp && ek.Proto != udp) {
				to.SPort, to.DPort = ek.SPort, ek.DPort
				if p.Inner.L4 != 0 && ek.Proto == icmp {
					// Query identifiers: change the one present.
					if ek.SPort != 0 {
						to.SPort = sport
					} else if ek.DPort != 0 {
						to.DPort = dport
					}
				}
			}
			RewriteError(frame, &p, ek, to)
		} else {
			if p.L4 != 0 {
				switch {
				case k.Proto == tcp || k.Proto == udp:
					to.SPort, to.DPort = sport, dport
				case k.Proto == icmp && packet.IsQuery(p.ICMPType):
					if packet.IsQueryRequest(p.ICMPType) {
						to.SPort = sport
					} else {
						to.DPort = dport
					}
				}
			}
			if dport&0x8000 != 0 {
				RewriteTTL(frame, &p, k, to, false)
				if got := packet.IPv4(frame[p.L3:]).TTL(); got != p.TTL-1 {
					t.Errorf("TTL: got %d, want %d", got, p.TTL-1)
				}
			} else {
				Rewrite(frame, &p, k, to, false)
			}
		}
		var q packet.Parsed
		if r := packet.Parse(frame, &q); r != packet.ReasonNone {
			t.Fatalf("rewritten frame does not parse: %v", r)
		}
		if p.IsError {
			if got := ErrorKey(&q); got != to {
				t.Errorf("embedded key: got %v, want %v", got, to)
			}
			if !ICMPChecksumValid(frame, &q) {
				t.Errorf("ICMP checksum does not verify")
			}
		} else if got := TupleOf(&q); got != to {
			t.Errorf("tuple: got %v, want %v", got, to)
		}
		if before == nil {
			if err := packettest.Verify(frame); err != nil {
				t.Errorf("checksums verified before the rewrite, not after: %v", err)
			}
		}
	})
}

// FuzzTable runs a sequence of table operations decoded from the input on
// a small table (limit 16 flows, budget 5, 8 PAT ports per parity) and
// checks after each that no limit is exceeded, and at the end the table's
// invariants and that expiry leaves no flow and no port behind.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add(bytes.Repeat([]byte{0, 0x11, 0x22, 0x33}, 20))
	f.Add(bytes.Repeat([]byte{0x40, 0x81, 0x10, 0x05, 0xc0, 0x01, 0x20, 0x33}, 10))
	f.Fuzz(func(t *testing.T, ops []byte) {
		const (
			max    = 16
			budget = 5
			owners = 3
		)
		tb := NewTable(Options{MaxFlows: max, MaxOwners: 8, PAT: PATOptions{PortMin: 2000, PortMax: 2015, Search: 8}})
		now := uint32(t0)
		var seen []Tuple // tuples the table answered for, to track again
		for len(ops) >= 4 {
			op, a, b, c := ops[0], ops[1], ops[2], ops[3]
			ops = ops[4:]
			owner := uint32(a%owners) + 1
			proto := []uint8{tcp, udp, icmp, 47}[a>>2&3]
			k := tup(proto, privA+uint32(a>>4&3), 1000+uint16(b&7), remote1+uint32(b>>3&3), 80+uint16(b>>5))
			if proto == icmp || proto == 47 {
				k.DPort = 0
			}
			if proto == 47 {
				k.SPort = 0
			}
			var seg *Seg
			if proto == tcp {
				seg = &Seg{Flags: c, Seq: uint32(c) << 20, Ack: uint32(b) << 20, Win: uint16(a) << 4, WScale: int8(c&15) - 1, Len: uint32(c & 3)}
			}
			switch op % 8 {
			case 0, 1: // outbound PAT
				sp := patSpec(k, owner)
				sp.Budget = budget
				if v := tb.Create(sp, seg, now); v.Found {
					seen = append(seen, v.To.Reverse(), k)
				}
			case 2: // 1:1 DNAT inbound
				in := tup(proto, remote2, k.SPort, eip+uint32(a>>4&3), k.DPort)
				to := in
				to.Dst = privA + uint32(a>>4&3)
				sp := natSpec(in, to, owner)
				sp.Budget = budget
				if v := tb.Create(sp, seg, now); v.Found {
					seen = append(seen, v.To.Reverse(), in)
				}
			case 3: // inbound through a PAT mapping
				if len(seen) > 0 {
					r := seen[int(c)%len(seen)]
					if r.Dst == pub {
						if priv, pp, ok := tb.pat.lookup(r.Proto, pub, r.DPort); ok {
							in := tup(r.Proto, remote2+1, 7, pub, r.DPort)
							sp := &Spec{Orig: in, To: tup(r.Proto, remote2+1, 7, priv, pp), PATIn: true, Owner: owner, Budget: budget}
							tb.Create(sp, seg, now)
						}
					}
				}
			case 4, 5: // track something known, either way
				if len(seen) > 0 {
					tb.Track(seen[int(c)%len(seen)], seg, now)
				}
			case 6:
				tb.Expire(now, int(c%8))
				if c&0x80 != 0 {
					tb.Flush(owner)
				}
			case 7:
				now += uint32(c) * 4
			}
			if tb.Len() > max {
				t.Fatalf("Len %d > limit %d", tb.Len(), max)
			}
			for o := uint32(1); o <= owners; o++ {
				if n := tb.OwnerLen(o); n > budget {
					t.Fatalf("OwnerLen(%d) %d > budget %d", o, n, budget)
				}
			}
		}
		checkInvariants(t, tb, now, owners, budget)
		expireAll(tb, now+1<<20)
		if tb.Len() != 0 {
			t.Errorf("after expiry: Len %d", tb.Len())
		}
		for _, proto := range []uint8{tcp, udp, icmp, 47} {
			if n := tb.PATInUse(pub, proto); n != 0 {
				t.Errorf("after expiry: %d ports of proto %d in use", n, proto)
			}
		}
	})
}

// TestFuzzSeedsVerify checks the seeds are what FuzzRewrite needs: valid
// frames whose checksums verify.
func TestFuzzSeedsVerify(t *testing.T) {
	for i, b := range rewriteSeeds() {
		if err := packettest.Verify(b); err != nil {
			t.Errorf("seed %d: %v", i, err)
		}
		if binary.BigEndian.Uint16(b[12:]) != packet.EtherTypeIPv4 {
			t.Errorf("seed %d: not IPv4", i)
		}
	}
}
