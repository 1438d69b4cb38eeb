package nat

import (
	"net/netip"
	"testing"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

// Addresses used throughout the tests.
var (
	pub     = packettest.Addr("203.0.113.1")  // the gateway's PAT address
	eip     = packettest.Addr("203.0.113.10") // a record's 1:1 public IP
	eip2    = packettest.Addr("203.0.113.11")
	privA   = packettest.Addr("10.0.0.5")
	privB   = packettest.Addr("10.0.0.6")
	privC   = packettest.Addr("10.0.0.7")
	remote1 = packettest.Addr("198.51.100.7")
	remote2 = packettest.Addr("198.51.100.8")
	rtr     = packettest.Addr("192.0.2.1") // a router on the path
)

const t0 = 1_000_000 // the tests' "now" at start, Unix seconds

func tup(proto uint8, src uint32, sport uint16, dst uint32, dport uint16) Tuple {
	return Tuple{Src: src, Dst: dst, SPort: sport, DPort: dport, Proto: proto}
}

func ap(a uint32, port uint16) netip.AddrPort { return netip.AddrPortFrom(packet.Addr(a), port) }

// patSpec is an outbound PAT flow of k through pub.
func patSpec(k Tuple, owner uint32) *Spec {
	return &Spec{Orig: k, To: Tuple{Src: pub, Dst: k.Dst, DPort: k.DPort, Proto: k.Proto}, PATOut: true, Owner: owner}
}

// natSpec is a flow of k rewritten into to (1:1 SNAT or DNAT).
func natSpec(k, to Tuple, owner uint32) *Spec { return &Spec{Orig: k, To: to, Owner: owner} }

func mustCreate(t testing.TB, tb *Table, sp *Spec, seg *Seg, now uint32) Verdict {
	t.Helper()
	v := tb.Create(sp, seg, now)
	if v.Reason != packet.ReasonNone || !v.Found || !v.New {
		t.Fatalf("Create %v: got reason %v found %v new %v, want none true true", sp.Orig, v.Reason, v.Found, v.New)
	}
	return v
}

func parse(t testing.TB, frame []byte) *packet.Parsed {
	t.Helper()
	p := new(packet.Parsed)
	if r := packet.Parse(frame, p); r != packet.ReasonNone {
		t.Fatalf("Parse: %v", r)
	}
	return p
}

// conn drives one TCP connection through a table.
type conn struct {
	t     *testing.T
	tb    *Table
	sp    *Spec
	orig  Tuple
	reply Tuple
}

func newConn(t *testing.T, tb *Table, sp *Spec) *conn {
	return &conn{t: t, tb: tb, sp: sp, orig: sp.Orig}
}

// send runs a segment from dir: Track, or Create for the first packet.
func (c *conn) send(dir Dir, flags uint8, seq, ack, n uint32, now uint32) Verdict {
	s := &Seg{Flags: flags, Seq: seq, Ack: ack, Len: n, Win: 65535, WScale: -1}
	k := c.orig
	if dir == Reply {
		k = c.reply
	}
	v := c.tb.Track(k, s, now)
	if !v.Found && v.Reason == packet.ReasonNone && dir == Orig {
		v = c.tb.Create(c.sp, s, now)
	}
	if v.Found && dir == Orig && c.reply == (Tuple{}) {
		c.reply = v.To.Reverse()
	}
	return v
}
