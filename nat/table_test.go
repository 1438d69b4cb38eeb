package nat

import (
	"testing"
	"time"

	"roam/internal/packet"
)

const (
	tcp  = packet.ProtoTCP
	udp  = packet.ProtoUDP
	icmp = packet.ProtoICMP
)

func TestTranslations(t *testing.T) {
	tests := []struct {
		name string
		sp   func() *Spec
		// wantTo is the original direction's rewrite; the reply
		// direction must rewrite wantTo.Reverse() into sp.Orig.Reverse().
		wantTo Tuple
	}{
		{
			name:   "1:1 DNAT inbound",
			sp:     func() *Spec { return natSpec(tup(tcp, remote1, 5555, eip, 80), tup(tcp, remote1, 5555, privC, 80), 3) },
			wantTo: tup(tcp, remote1, 5555, privC, 80),
		},
		{
			name:   "1:1 SNAT outbound",
			sp:     func() *Spec { return natSpec(tup(udp, privC, 4000, remote1, 53), tup(udp, eip, 4000, remote1, 53), 3) },
			wantTo: tup(udp, eip, 4000, remote1, 53),
		},
		{
			name:   "PAT outbound preserves the port",
			sp:     func() *Spec { return patSpec(tup(tcp, privA, 40000, remote1, 443), 1) },
			wantTo: tup(tcp, pub, 40000, remote1, 443),
		},
		{
			name:   "PAT ICMP echo identifier",
			sp:     func() *Spec { return patSpec(tup(icmp, privA, 777, remote1, 0), 1) },
			wantTo: tup(icmp, pub, 777, remote1, 0),
		},
		{
			name: "hairpin: PAT source and DNAT destination in one flow",
			sp: func() *Spec {
				sp := patSpec(tup(tcp, privA, 40001, eip, 80), 1)
				sp.To.Dst = privC
				return sp
			},
			wantTo: tup(tcp, pub, 40001, privC, 80),
		},
		{
			name:   "no translation (routed between subnets)",
			sp:     func() *Spec { return natSpec(tup(udp, privA, 1, privC, 2), tup(udp, privA, 1, privC, 2), 1) },
			wantTo: tup(udp, privA, 1, privC, 2),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := NewTable(Options{})
			sp := tc.sp()
			var seg *Seg
			if sp.Orig.Proto == tcp {
				seg = &Seg{Flags: packet.TCPSyn, Seq: 1, WScale: -1}
			}
			v := mustCreate(t, tb, sp, seg, t0)
			if v.To != tc.wantTo || v.Dir != Orig || v.Owner != sp.Owner || v.Ref == 0 {
				t.Fatalf("Create: got To %v dir %d owner %d ref %d, want %v 0 %d non-zero", v.To, v.Dir, v.Owner, v.Ref, tc.wantTo, sp.Owner)
			}
			if v.Translated(sp.Orig) != (tc.wantTo != sp.Orig) {
				t.Errorf("Translated: got %v, want %v", v.Translated(sp.Orig), tc.wantTo != sp.Orig)
			}
			// Same direction again.
			if v2 := tb.Track(sp.Orig, nil, t0+1); !v2.Found || v2.New || v2.Dir != Orig || v2.To != tc.wantTo || v2.Ref != v.Ref {
				t.Errorf("Track orig: got %+v, want found, not new, To %v", v2, tc.wantTo)
			}
			// The reply.
			var rseg *Seg
			if sp.Orig.Proto == tcp {
				rseg = &Seg{Flags: packet.TCPSyn | packet.TCPAck, Seq: 100, Ack: 2, WScale: -1}
			}
			r := tb.Track(tc.wantTo.Reverse(), rseg, t0+2)
			if !r.Found || r.Dir != Reply || r.To != sp.Orig.Reverse() || r.Reason != packet.ReasonNone || r.Ref != v.Ref {
				t.Errorf("Track reply %v: got %+v, want found dir 1 To %v", tc.wantTo.Reverse(), r, sp.Orig.Reverse())
			}
			if p := tb.Peek(tc.wantTo.Reverse(), t0+2); !p.Found || p.To != sp.Orig.Reverse() {
				t.Errorf("Peek reply: got %+v, want found To %v", p, sp.Orig.Reverse())
			}
			if got := tb.Len(); got != 1 {
				t.Errorf("Len: got %d, want 1", got)
			}
			// Unknown tuples are not found and change nothing.
			if u := tb.Track(tup(udp, remote2, 1, pub, 40000), nil, t0); u.Found || u.Reason != packet.ReasonNone {
				t.Errorf("Track unknown: got %+v, want zero verdict", u)
			}
		})
	}
}

func TestPATMapping(t *testing.T) {
	tb := NewTable(Options{})
	now := uint32(t0)
	create := func(k Tuple) uint16 {
		t.Helper()
		return mustCreate(t, tb, patSpec(k, 1), nil, now).To.SPort
	}
	p1 := create(tup(udp, privA, 40000, remote1, 53))
	p2 := create(tup(udp, privA, 40000, remote2, 53))
	p3 := create(tup(udp, privA, 40000, remote1, 5353))
	t.Run("endpoint-independent mapping", func(t *testing.T) {
		if p1 != 40000 || p2 != p1 || p3 != p1 {
			t.Errorf("same private endpoint to three remotes: got ports %d %d %d, want 40000 each", p1, p2, p3)
		}
		if got, ok := tb.PATMapping(udp, pub, privA, 40000); !ok || got != 40000 {
			t.Errorf("Mapping: got %d %v, want 40000 true", got, ok)
		}
		if a, port, ok := tb.pat.lookup(udp, pub, 40000); !ok || a != privA || port != 40000 {
			t.Errorf("Lookup: got %v:%d %v, want 10.0.0.5:40000 true", packet.Addr(a), port, ok)
		}
	})
	t.Run("different endpoints get different ports of the same parity", func(t *testing.T) {
		seen := map[uint16]bool{p1: true}
		for i, k := range []Tuple{
			tup(udp, privB, 40000, remote1, 53), tup(udp, privC, 40000, remote1, 53),
			tup(udp, privB, 40001, remote1, 53), tup(udp, privC, 40001, remote1, 53),
		} {
			p := create(k)
			if seen[p] {
				t.Errorf("endpoint %d: port %d handed out twice", i, p)
			}
			seen[p] = true
			if p%2 != k.SPort%2 || p < 1024 {
				t.Errorf("endpoint %v: got port %d, want parity %d and >= 1024", k.SrcAddrPort(), p, k.SPort%2)
			}
		}
		if got := tb.PATInUse(pub, udp); got != 5 {
			t.Errorf("InUse: got %d, want 5", got)
		}
	})
	t.Run("ports below 1024 stay below 1024", func(t *testing.T) {
		for i, a := range []uint32{privA, privB, privC} {
			p := create(tup(udp, a, 123, remote1, 123))
			if p == 0 || p >= 1024 || p%2 != 1 {
				t.Errorf("endpoint %d: got port %d, want odd in 1..1023", i, p)
			}
			if i == 0 && p != 123 {
				t.Errorf("first endpoint: got port %d, want 123 preserved", p)
			}
		}
	})
	t.Run("TCP and UDP pools are separate", func(t *testing.T) {
		p := mustCreate(t, tb, patSpec(tup(tcp, privB, 40000, remote1, 80), 1), &Seg{Flags: packet.TCPSyn, WScale: -1}, now).To.SPort
		if p != 40000 {
			t.Errorf("TCP from 10.0.0.6:40000: got %d, want 40000 (UDP's 40000 belongs to another endpoint)", p)
		}
	})
}

func TestPATParityAndExhaustion(t *testing.T) {
	// An odd-sized range: 1001..1011 (port >= 1024 map into it).
	tb := NewTable(Options{PAT: PATOptions{PortMin: 2001, PortMax: 2011}})
	var got []uint16
	for i := 0; i < 5; i++ {
		v := tb.Create(patSpec(tup(udp, privA+uint32(i), 5000, remote1, 53), 1), nil, t0)
		if v.Reason != packet.ReasonNone {
			t.Fatalf("flow %d: got %v, want none", i, v.Reason)
		}
		got = append(got, v.To.SPort)
	}
	seen := map[uint16]bool{}
	for _, p := range got {
		if p < 2001 || p > 2011 || p%2 != 0 || seen[p] {
			t.Errorf("ports %v: want distinct even ports in 2001..2011", got)
			break
		}
		seen[p] = true
	}
	// All 5 even ports are taken: the next even endpoint is refused.
	v := tb.Create(patSpec(tup(udp, privA+100, 5000, remote1, 53), 1), nil, t0)
	if v.Reason != ReasonNoPort4NAT {
		t.Errorf("exhausted: got %v, want %v", v.Reason, ReasonNoPort4NAT)
	}
	if n := tb.Len(); n != 5 {
		t.Errorf("Len: got %d, want 5", n)
	}
	// An odd endpoint still gets an odd port.
	if v := tb.Create(patSpec(tup(udp, privA+101, 5001, remote1, 53), 1), nil, t0); v.Reason != packet.ReasonNone || v.To.SPort%2 != 1 {
		t.Errorf("odd endpoint: got %v port %d, want none and an odd port", v.Reason, v.To.SPort)
	}
}

// TestPATSearchInRuns fills the PAT range as guests do, each picking
// source ports from the same ephemeral range (32768..60999) so that port
// preservation leaves one long run of taken ports: the bounded search must
// still find the free ports outside it.
func TestPATSearchInRuns(t *testing.T) {
	tb := NewTable(Options{MaxFlows: 1 << 17})
	for h := uint32(0); h < 2; h++ {
		for port := 32768; port <= 60999; port++ {
			k := tup(udp, privA+h, uint16(port), remote1, 53)
			v := tb.Create(patSpec(k, 1), nil, t0)
			if v.Reason != packet.ReasonNone {
				t.Fatalf("host %d port %d: got %v with %d ports in use of 64512", h, port, v.Reason, tb.PATInUse(pub, udp))
			}
			if v.To.SPort%2 != uint16(port%2) || v.To.SPort < 1024 {
				t.Fatalf("host %d port %d: got public port %d", h, port, v.To.SPort)
			}
		}
	}
	if got := tb.PATInUse(pub, udp); got != 2*28232 {
		t.Errorf("InUse: got %d, want %d", got, 2*28232)
	}
}

func TestTCPStates(t *testing.T) {
	type step struct {
		dir        Dir
		flags      uint8
		seq, ack   uint32
		n          uint32
		wantState  uint8
		wantReason packet.Reason
		wantNew    bool
	}
	const (
		S = packet.TCPSyn
		A = packet.TCPAck
		F = packet.TCPFin
		R = packet.TCPRst
		P = packet.TCPPsh
	)
	handshake := []step{
		{Orig, S, 100, 0, 0, StateSynSent, 0, true},
		{Reply, S | A, 5000, 101, 0, StateSynRecv, 0, false},
		{Orig, A, 101, 5001, 0, StateEstablished, 0, false},
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"handshake, data, FIN teardown, port reuse", append(append([]step{}, handshake...),
			step{Orig, P | A, 101, 5001, 100, StateEstablished, 0, false},
			step{Reply, A, 5001, 201, 0, StateEstablished, 0, false},
			step{Reply, P | A, 5001, 201, 1000, StateEstablished, 0, false},
			step{Orig, F | A, 201, 6001, 0, StateFinWait, 0, false},
			step{Reply, A, 6001, 202, 0, StateCloseWait, 0, false},
			step{Reply, A, 6001, 202, 0, StateCloseWait, 0, false},
			step{Orig, F | A, 201, 6001, 0, StateCloseWait, 0, false}, // retransmitted FIN
			step{Reply, F | A, 6001, 202, 0, StateLastAck, 0, false},
			step{Orig, A, 202, 6002, 0, StateTimeWait, 0, false},
			step{Reply, S | A, 1, 1, 0, StateTimeWait, 0, false}, // stray SYN-ACK changes nothing
			step{Orig, S, 90000, 0, 0, StateSynSent, 0, true},    // port reuse after close
			step{Reply, S | A, 70000, 90001, 0, StateSynRecv, 0, false},
			step{Orig, A, 90001, 70001, 0, StateEstablished, 0, false},
		)},
		{"simultaneous close", append(append([]step{}, handshake...),
			step{Orig, F | A, 101, 5001, 0, StateFinWait, 0, false},
			step{Reply, F | A, 5001, 101, 0, StateLastAck, 0, false},
			step{Reply, A, 5002, 102, 0, StateTimeWait, 0, false},
		)},
		{"responder closes first", append(append([]step{}, handshake...),
			step{Reply, F | A, 5001, 101, 0, StateFinWait, 0, false},
			step{Orig, A, 101, 5002, 0, StateCloseWait, 0, false},
			step{Orig, F | A, 101, 5002, 0, StateLastAck, 0, false},
			step{Reply, A, 5002, 102, 0, StateTimeWait, 0, false},
		)},
		{"simultaneous open", []step{
			{Orig, S, 100, 0, 0, StateSynSent, 0, true},
			{Reply, S, 5000, 0, 0, StateSynSent2, 0, false},
			{Orig, S | A, 100, 5001, 0, StateSynRecv, 0, false},
			{Reply, S | A, 5000, 101, 0, StateSynRecv, 0, false},
			{Orig, A, 101, 5001, 0, StateEstablished, 0, false},
		}},
		{"RST in window closes", append(append([]step{}, handshake...),
			step{Reply, R, 5001 + 1000, 0, 0, StateClose, 0, false},
			step{Orig, S, 7777, 0, 0, StateSynSent, 0, true}, // reuse after RST
		)},
		{"RST out of window dropped", append(append([]step{}, handshake...),
			step{Reply, R, 5001 + 1<<20, 0, 0, StateEstablished, ReasonInvalidState, false},
			step{Orig, R | A, 101 + 1<<31, 0, 0, StateEstablished, ReasonInvalidState, false},
			step{Orig, R | A, 101, 5001, 0, StateClose, 0, false},
		)},
		{"RST answering a SYN must acknowledge it", []step{
			{Orig, S, 100, 0, 0, StateSynSent, 0, true},
			{Reply, R | A, 0, 555, 0, StateSynSent, ReasonInvalidState, false},
			{Reply, R | A, 0, 101, 0, StateClose, 0, false},
		}},
		{"RST answering a SYN retried with an earlier ISN", []step{
			{Orig, S, 100, 0, 0, StateSynSent, 0, true},
			{Orig, S, 50, 0, 0, StateSynSent, 0, false},
			{Reply, R | A, 0, 101, 0, StateSynSent, ReasonInvalidState, false},
			{Reply, R | A, 0, 51, 0, StateClose, 0, false},
		}},
		{"SYN-ACK retried with a new ISN", []step{
			{Orig, S, 100, 0, 0, StateSynSent, 0, true},
			{Reply, S | A, 5000, 101, 0, StateSynRecv, 0, false},
			{Reply, S | A, 4000, 101, 0, StateSynRecv, 0, false},
			{Orig, A, 101, 4001, 0, StateEstablished, 0, false},
			{Reply, R, 4001, 0, 0, StateClose, 0, false},
		}},
		{"mid-stream pick-up by a bare ACK", []step{
			{Orig, A, 12345, 999, 10, StateEstablished, 0, true},
			{Reply, A, 999, 12355, 0, StateEstablished, 0, false},
			{Reply, R, 999 + 1<<24, 0, 0, StateEstablished, ReasonInvalidState, false},
		}},
		{"mid-stream pick-up by PSH-ACK", []step{
			{Orig, P | A, 12345, 999, 10, StateEstablished, 0, true},
		}},
		{"SYN-ACK cannot start a flow", []step{{Orig, S | A, 1, 1, 0, StateNone, ReasonInvalidState, false}}},
		{"RST cannot start a flow", []step{{Orig, R, 1, 0, 0, StateNone, ReasonInvalidState, false}}},
		{"FIN cannot start a flow", []step{{Orig, F | A, 1, 1, 0, StateNone, ReasonInvalidState, false}}},
		{"SYN-RST cannot start a flow", []step{{Orig, S | R, 1, 1, 0, StateNone, ReasonInvalidState, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := NewTable(Options{})
			c := newConn(t, tb, patSpec(tup(tcp, privA, 40000, remote1, 443), 1))
			var to Tuple
			for i, s := range tc.steps {
				v := c.send(s.dir, s.flags, s.seq, s.ack, s.n, t0+uint32(i))
				if v.Reason != s.wantReason {
					t.Fatalf("step %d (dir %d flags %#x): got reason %v, want %v", i, s.dir, s.flags, v.Reason, s.wantReason)
				}
				if s.wantReason == packet.ReasonNone && !v.Found {
					t.Fatalf("step %d: flow not found", i)
				}
				if v.Found && v.State != s.wantState {
					t.Fatalf("step %d (dir %d flags %#x): got state %s, want %s", i, s.dir, s.flags, StateName(v.State), StateName(s.wantState))
				}
				if v.New != s.wantNew {
					t.Errorf("step %d: got New %v, want %v", i, v.New, s.wantNew)
				}
				if v.Found && v.Dir == Orig {
					if to != (Tuple{}) && v.To != to {
						t.Errorf("step %d: translation changed from %v to %v", i, to, v.To)
					}
					to = v.To
				}
			}
			if tc.steps[0].wantReason != packet.ReasonNone && tb.Len() != 0 {
				t.Errorf("refused first packet left %d flows", tb.Len())
			}
		})
	}
}

func TestTCPDroppedSegmentDoesNotRefresh(t *testing.T) {
	tb := NewTable(Options{})
	c := newConn(t, tb, patSpec(tup(tcp, privA, 40000, remote1, 443), 1))
	c.send(Orig, packet.TCPSyn, 100, 0, 0, t0)
	c.send(Reply, packet.TCPSyn|packet.TCPAck, 5000, 101, 0, t0)
	c.send(Orig, packet.TCPAck, 101, 5001, 0, t0)
	est := uint32(DefaultTimeouts().TCPEstablished / time.Second)
	if v := c.send(Reply, packet.TCPRst, 1<<30, 0, 0, t0+est); v.Reason != ReasonInvalidState {
		t.Fatalf("out-of-window RST: got %v, want invalid_state", v.Reason)
	}
	if v := c.send(Reply, packet.TCPAck, 5001, 101, 0, t0+est+1); v.Found {
		t.Errorf("a dropped RST refreshed the flow: got found at established timeout + 1")
	}
}

func TestDefaultTimeouts(t *testing.T) {
	d := DefaultTimeouts()
	for _, tc := range []struct {
		name     string
		got, min time.Duration
	}{
		{"UDP", d.UDP, 2 * time.Minute},
		{"UDPStream", d.UDPStream, 2 * time.Minute},
		{"TCPEstablished", d.TCPEstablished, 2*time.Hour + 4*time.Minute},
		{"TCPTransitory", d.TCPTransitory, 4 * time.Minute},
		{"ICMP", d.ICMP, 60 * time.Second},
	} {
		if tc.got < tc.min {
			t.Errorf("%s: got %v, want >= %v", tc.name, tc.got, tc.min)
		}
	}
	custom := Timeouts{UDP: 3 * time.Minute, TCPEstablished: 90 * time.Minute, ICMP: 1500 * time.Millisecond}.withDefaults().public()
	if custom.UDP != 3*time.Minute || custom.TCPEstablished != 90*time.Minute || custom.ICMP != 2*time.Second || custom.TCPTransitory != 4*time.Minute {
		t.Errorf("custom: got %+v", custom)
	}
}

// TestTimeouts checks each kind of flow lives exactly its timeout after its
// last packet: a packet at last+timeout finds it, at last+timeout+1 a reply
// is unsolicited and an original-direction packet revives it.
func TestTimeouts(t *testing.T) {
	d := DefaultTimeouts()
	sec := func(d time.Duration) uint32 { return uint32(d / time.Second) }
	syn := &Seg{Flags: packet.TCPSyn, Seq: 100, WScale: -1}
	tests := []struct {
		name    string
		k       Tuple
		setup   func(tb *Table, k, r Tuple) // after Create at t0
		seg     func(dir Dir) *Seg          // the probing packets' segments
		timeout uint32
	}{
		{"UDP one way", tup(udp, privA, 1000, remote1, 53), nil, nil, sec(d.UDP)},
		{"UDP both ways", tup(udp, privA, 1000, remote1, 53), func(tb *Table, k, r Tuple) { tb.Track(r, nil, t0) }, nil, sec(d.UDPStream)},
		{"ICMP echo", tup(icmp, privA, 9, remote1, 0), nil, nil, sec(d.ICMP)},
		{"generic protocol", tup(47, privA, 0, remote1, 0), nil, nil, sec(d.Generic)},
		{"TCP SYN_SENT", tup(tcp, privA, 1000, remote1, 80), nil, func(dir Dir) *Seg {
			if dir == Orig {
				return &Seg{Flags: packet.TCPSyn, Seq: 100, WScale: -1}
			}
			return &Seg{Flags: packet.TCPSyn | packet.TCPAck, Seq: 5000, Ack: 101, WScale: -1}
		}, sec(d.TCPTransitory)},
		{"TCP ESTABLISHED", tup(tcp, privA, 1000, remote1, 80), func(tb *Table, k, r Tuple) {
			tb.Track(r, &Seg{Flags: packet.TCPSyn | packet.TCPAck, Seq: 5000, Ack: 101, WScale: -1}, t0)
			tb.Track(k, &Seg{Flags: packet.TCPAck, Seq: 101, Ack: 5001, WScale: -1}, t0)
		}, func(dir Dir) *Seg {
			if dir == Orig {
				return &Seg{Flags: packet.TCPAck, Seq: 101, Ack: 5001, WScale: -1}
			}
			return &Seg{Flags: packet.TCPAck, Seq: 5001, Ack: 101, WScale: -1}
		}, sec(d.TCPEstablished)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, dir := range []Dir{Orig, Reply} {
				tb := NewTable(Options{})
				var seg *Seg
				if tc.k.Proto == tcp {
					seg = syn
				}
				v := mustCreate(t, tb, patSpec(tc.k, 1), seg, t0)
				r := v.To.Reverse()
				if tc.setup != nil {
					tc.setup(tb, tc.k, r)
				}
				probe := func(dir Dir, now uint32) Verdict {
					k := tc.k
					if dir == Reply {
						k = r
					}
					var s *Seg
					if tc.seg != nil {
						s = tc.seg(dir)
					}
					return tb.Track(k, s, now)
				}
				if p := tb.Peek(r, t0+tc.timeout); !p.Found {
					t.Errorf("Peek at timeout: not found")
				}
				if p := tb.Peek(r, t0+tc.timeout+1); p.Found {
					t.Errorf("Peek after timeout: found")
				}
				if dir == Reply {
					if v := probe(Reply, t0+tc.timeout); !v.Found || v.Reason != packet.ReasonNone {
						t.Fatalf("reply at timeout %d: got %+v, want found", tc.timeout, v)
					}
					v = probe(Reply, t0+tc.timeout+1<<16)
					if v.Found || v.Reason != packet.ReasonNone {
						t.Errorf("reply after timeout: got found %v reason %v, want not found, none", v.Found, v.Reason)
					}
					if tb.Len() != 0 || tb.PATInUse(pub, tc.k.Proto) != 0 {
						t.Errorf("reply after timeout: Len %d, PAT InUse %d, want the dead flow removed", tb.Len(), tb.PATInUse(pub, tc.k.Proto))
					}
					continue
				}
				v = probe(Orig, t0+tc.timeout+1)
				if !v.Found || !v.New || v.Reason != packet.ReasonNone || v.To.Reverse() != r {
					t.Errorf("orig after timeout: got %+v, want revived with the same translation", v)
				}
				if got := tb.Counters.Revived.Load(); got != 1 {
					t.Errorf("Revived: got %d, want 1", got)
				}
				if v := probe(Reply, t0+tc.timeout+2); !v.Found {
					t.Errorf("reply after revival: not found")
				}
			}
		})
	}
}

// TestExpiredReplyStartsNewFlow: a record with a 1:1 public IP whose
// inbound flow expired (not swept yet) sends to the same remote endpoint:
// the dead flow must not get in the way of the new outbound one.
func TestExpiredReplyStartsNewFlow(t *testing.T) {
	tb := NewTable(Options{})
	in := natSpec(tup(udp, remote1, 1234, eip, 53), tup(udp, remote1, 1234, privC, 53), 3)
	mustCreate(t, tb, in, nil, t0)
	late := t0 + uint32(DefaultTimeouts().UDP/time.Second) + 1
	out := natSpec(tup(udp, privC, 53, remote1, 1234), tup(udp, eip, 53, remote1, 1234), 3)
	if v := tb.Track(out.Orig, nil, late); v.Found || v.Reason != packet.ReasonNone {
		t.Fatalf("Track: got %+v, want not found, none", v)
	}
	v := mustCreate(t, tb, out, nil, late)
	if v.To != out.To || tb.Len() != 1 || tb.OwnerLen(3) != 1 {
		t.Errorf("Create: To %v Len %d OwnerLen %d, want %v 1 1", v.To, tb.Len(), tb.OwnerLen(3), out.To)
	}
	// Create without Track first, and a conflict on the translated tuple:
	// the public IP moved to another record while the old flow is dead
	// but not swept.
	old := natSpec(tup(udp, privA, 5000, remote2, 53), tup(udp, eip2, 5000, remote2, 53), 1)
	mustCreate(t, tb, old, nil, t0)
	moved := natSpec(tup(udp, privB, 5000, remote2, 53), tup(udp, eip2, 5000, remote2, 53), 2)
	if v := tb.Create(moved, nil, t0+1); v.Reason != ReasonNATConflict {
		t.Errorf("live conflict: got %v, want nat_conflict", v.Reason)
	}
	if v := tb.Create(moved, nil, late); v.Reason != packet.ReasonNone || !v.New {
		t.Errorf("conflict with a dead flow: got %+v, want created", v)
	}
	if tb.OwnerLen(1) != 0 || tb.OwnerLen(2) != 1 {
		t.Errorf("OwnerLen 1, 2: got %d %d, want 0 1", tb.OwnerLen(1), tb.OwnerLen(2))
	}
}

func TestExpiredTCPNotRevivedByRST(t *testing.T) {
	tb := NewTable(Options{})
	k := tup(tcp, privA, 1000, remote1, 80)
	mustCreate(t, tb, patSpec(k, 1), &Seg{Flags: packet.TCPSyn, Seq: 1, WScale: -1}, t0)
	late := t0 + uint32(DefaultTimeouts().TCPTransitory/time.Second) + 1
	for _, fl := range []uint8{packet.TCPRst, packet.TCPFin | packet.TCPAck, packet.TCPSyn | packet.TCPAck} {
		if v := tb.Track(k, &Seg{Flags: fl, Seq: 5, WScale: -1}, late); v.Found || v.Reason != ReasonInvalidState {
			t.Errorf("flags %#x on an expired flow: got found %v reason %v, want invalid_state", fl, v.Found, v.Reason)
		}
	}
	if v := tb.Track(k, &Seg{Flags: packet.TCPSyn, Seq: 5, WScale: -1}, late); !v.Found || !v.New || v.State != StateSynSent {
		t.Errorf("SYN on an expired flow: got %+v, want revived in SYN_SENT", v)
	}
}

// expireAll sweeps the whole table.
func expireAll(tb *Table, now uint32) int {
	return tb.Expire(now, 1<<30)
}

func TestExpire(t *testing.T) {
	tb := NewTable(Options{})
	const n = 5000
	for i := 0; i < n; i++ {
		k := tup(udp, privA+uint32(i%50), uint16(10000+i), remote1, 53)
		mustCreate(t, tb, patSpec(k, 1), nil, t0+uint32(i%2))
	}
	if got := tb.PATInUse(pub, udp); got != n {
		t.Fatalf("InUse: got %d, want %d", got, n)
	}
	udpTO := uint32(DefaultTimeouts().UDP / time.Second)
	if got := expireAll(tb, t0+udpTO); got != 0 {
		t.Errorf("Expire at timeout: removed %d, want 0", got)
	}
	if got := expireAll(tb, t0+udpTO+1); got != n/2 {
		t.Errorf("Expire at timeout+1: removed %d, want %d", got, n/2)
	}
	if got := tb.Len(); got != n/2 {
		t.Errorf("Len: got %d, want %d", got, n/2)
	}
	if got := expireAll(tb, t0+udpTO+2); got != n/2 {
		t.Errorf("Expire at timeout+2: removed %d, want %d", got, n/2)
	}
	if tb.Len() != 0 || tb.PATInUse(pub, udp) != 0 || tb.OwnerLen(1) != 0 {
		t.Errorf("after expiry: Len %d InUse %d OwnerLen %d, want 0 0 0", tb.Len(), tb.PATInUse(pub, udp), tb.OwnerLen(1))
	}
	if got := tb.Counters.Expired.Load(); got != n {
		t.Errorf("Expired: got %d, want %d", got, n)
	}
	// Small sweeps make progress and together remove everything.
	for i := 0; i < 100; i++ {
		mustCreate(t, tb, patSpec(tup(udp, privB, uint16(2000+i), remote1, 53), 1), nil, t0)
	}
	total := 0
	for i := 0; i < 1000 && tb.Len() > 0; i++ {
		if got := tb.Expire(t0+udpTO+1, 4); got > 4 {
			t.Fatalf("Expire(max 4) removed %d", got)
		} else {
			total += got
		}
	}
	if total != 100 || tb.Len() != 0 {
		t.Errorf("small sweeps: removed %d, Len %d, want 100, 0", total, tb.Len())
	}
}

// TestREQ8 checks RFC 6888 REQ-8: a port freed when its mapping expired is
// not given to another endpoint for 120 s.
func TestREQ8(t *testing.T) {
	tb := NewTable(Options{})
	udpTO := uint32(DefaultTimeouts().UDP / time.Second)
	mustCreate(t, tb, patSpec(tup(udp, privA, 40000, remote1, 53), 1), nil, t0)
	freedAt := t0 + udpTO
	if got := expireAll(tb, freedAt+1); got != 1 {
		t.Fatalf("Expire: removed %d, want 1", got)
	}
	for i, now := range []uint32{freedAt + 1, freedAt + 60, freedAt + 119} {
		k := tup(udp, privB+uint32(i), 40000, remote1, 53)
		if v := mustCreate(t, tb, patSpec(k, 1), nil, now); v.To.SPort == 40000 {
			t.Errorf("%d s after the port was freed: another endpoint got it", now-freedAt)
		}
	}
	if v := mustCreate(t, tb, patSpec(tup(udp, privA+100, 40000, remote1, 53), 1), nil, freedAt+120); v.To.SPort != 40000 {
		t.Errorf("120 s after: got port %d, want 40000 again", v.To.SPort)
	}
}

// TestREQ8ClockSkew: a port freed by one worker is still held for another
// whose clock is a second behind; a clock that went far back (a replay
// starting over) does not keep ports held.
func TestREQ8ClockSkew(t *testing.T) {
	tb := NewTable(Options{})
	mustCreate(t, tb, patSpec(tup(udp, privA, 40000, remote1, 53), 1), nil, t0)
	udpTO := uint32(DefaultTimeouts().UDP / time.Second)
	expireAll(tb, t0+udpTO+1) // freed at t0+udpTO
	if v := mustCreate(t, tb, patSpec(tup(udp, privB, 40000, remote1, 53), 1), nil, t0+udpTO-1); v.To.SPort == 40000 {
		t.Errorf("1 s behind the clock that freed it: port handed out")
	}
	if v := mustCreate(t, tb, patSpec(tup(udp, privC, 40000, remote1, 53), 1), nil, t0-1000); v.To.SPort != 40000 {
		t.Errorf("clock far behind: got port %d, want 40000", v.To.SPort)
	}
}

func TestREQ8Flush(t *testing.T) {
	tb := NewTable(Options{})
	mustCreate(t, tb, patSpec(tup(udp, privA, 40000, remote1, 53), 7), nil, t0)
	tb.Expire(t0+10, 1) // the table learns the time
	if n := tb.Flush(7); n != 1 {
		t.Fatalf("Flush: removed %d, want 1", n)
	}
	if v := mustCreate(t, tb, patSpec(tup(udp, privB, 40000, remote1, 53), 1), nil, t0+11); v.To.SPort == 40000 {
		t.Errorf("1 s after a flush freed the port: another endpoint got it")
	}
}

// TestRefusedDoesNotHoldPort checks that a PAT port picked for a flow the
// table then refused is not held from reuse.
func TestRefusedDoesNotHoldPort(t *testing.T) {
	tb := NewTable(Options{MaxFlows: 1})
	mustCreate(t, tb, patSpec(tup(udp, privA, 1, remote1, 53), 1), nil, t0)
	if v := tb.Create(patSpec(tup(udp, privB, 40000, remote1, 53), 1), nil, t0); v.Reason != ReasonTableFull {
		t.Fatalf("full table: got %v, want table_full", v.Reason)
	}
	if tb.PATInUse(pub, udp) != 1 {
		t.Errorf("InUse after refusal: got %d, want 1", tb.PATInUse(pub, udp))
	}
	tb.Flush(0)
	if v := mustCreate(t, tb, patSpec(tup(udp, privC, 40000, remote1, 53), 1), nil, t0); v.To.SPort != 40000 {
		t.Errorf("port of a refused flow: got %d for another endpoint, want 40000 (never used, no hold)", v.To.SPort)
	}
}

func TestLimits(t *testing.T) {
	t.Run("global limit", func(t *testing.T) {
		tb := NewTable(Options{MaxFlows: 100})
		var est []Tuple
		for i := 0; i < 100; i++ {
			k := tup(tcp, privA, uint16(1000+i), remote1, 80)
			v := mustCreate(t, tb, patSpec(k, 1), &Seg{Flags: packet.TCPAck, Seq: 1, WScale: -1}, t0)
			est = append(est, v.To.Reverse())
		}
		for i := 0; i < 10; i++ {
			v := tb.Create(patSpec(tup(tcp, privB, uint16(1000+i), remote1, 80), 2), &Seg{Flags: packet.TCPSyn, WScale: -1}, t0+1)
			if v.Reason != ReasonTableFull || v.Found {
				t.Fatalf("new flow on a full table: got %v found %v, want table_full", v.Reason, v.Found)
			}
		}
		if got := tb.Counters.Refused.Load(); got != 10 {
			t.Errorf("Refused: got %d, want 10", got)
		}
		if tb.Len() != 100 || tb.OwnerLen(2) != 0 || tb.PATInUse(pub, tcp) != 100 {
			t.Errorf("after refusals: Len %d OwnerLen(2) %d InUse %d, want 100 0 100", tb.Len(), tb.OwnerLen(2), tb.PATInUse(pub, tcp))
		}
		for i, r := range est {
			if v := tb.Track(r, &Seg{Flags: packet.TCPAck, Seq: 1, Ack: 1, WScale: -1}, t0+2); !v.Found || v.Reason != packet.ReasonNone {
				t.Fatalf("established flow %d on a full table: got %+v", i, v)
			}
		}
		// Once flows have expired, new ones take their place even
		// without an explicit Expire.
		late := t0 + 2 + uint32(DefaultTimeouts().TCPEstablished/time.Second) + 1
		for i := 0; i < 100; i++ {
			v := tb.Create(patSpec(tup(tcp, privC, uint16(3000+i), remote1, 80), 3), &Seg{Flags: packet.TCPSyn, WScale: -1}, late)
			if v.Reason != packet.ReasonNone {
				t.Fatalf("new flow %d when every old flow expired: got %v, want none", i, v.Reason)
			}
		}
		if tb.Len() != 100 || tb.OwnerLen(1) != 0 || tb.OwnerLen(3) != 100 {
			t.Errorf("after turnover: Len %d OwnerLen(1) %d OwnerLen(3) %d, want 100 0 100", tb.Len(), tb.OwnerLen(1), tb.OwnerLen(3))
		}
	})
	t.Run("per-owner budget", func(t *testing.T) {
		tb := NewTable(Options{})
		budget := func(owner uint32, port uint16) Verdict {
			sp := patSpec(tup(udp, privA+owner, port, remote1, 53), owner)
			sp.Budget = 3
			return tb.Create(sp, nil, t0)
		}
		for i := 0; i < 3; i++ {
			if v := budget(1, uint16(100+i)); v.Reason != packet.ReasonNone {
				t.Fatalf("owner 1 flow %d: got %v", i, v.Reason)
			}
		}
		if v := budget(1, 200); v.Reason != ReasonBudget {
			t.Errorf("owner 1 over budget: got %v, want flow_budget", v.Reason)
		}
		for i := 0; i < 3; i++ {
			if v := budget(2, uint16(100+i)); v.Reason != packet.ReasonNone {
				t.Errorf("owner 2 flow %d: got %v, want none", i, v.Reason)
			}
		}
		if tb.OwnerLen(1) != 3 || tb.OwnerLen(2) != 3 || tb.Len() != 6 {
			t.Errorf("OwnerLen 1, 2, Len: got %d %d %d, want 3 3 6", tb.OwnerLen(1), tb.OwnerLen(2), tb.Len())
		}
		// An existing flow of an owner at its budget is still tracked.
		sp := patSpec(tup(udp, privA+1, 100, remote1, 53), 1)
		sp.Budget = 3
		if v := tb.Create(sp, nil, t0+1); v.Reason != packet.ReasonNone || !v.Found || v.New {
			t.Errorf("existing flow through Create at budget: got %+v", v)
		}
		if n := tb.Flush(1); n != 3 {
			t.Errorf("Flush(1): removed %d, want 3", n)
		}
		if v := budget(1, 200); v.Reason != packet.ReasonNone {
			t.Errorf("owner 1 after flush: got %v, want none", v.Reason)
		}
		// Expired flows do not count against the budget, swept or not.
		late := t0 + uint32(DefaultTimeouts().UDP/time.Second) + 10
		sp2 := patSpec(tup(udp, privA+2, 300, remote1, 53), 2)
		sp2.Budget = 3
		if v := tb.Create(sp2, nil, late); v.Reason != packet.ReasonNone {
			t.Errorf("owner 2 once its flows expired: got %v, want none", v.Reason)
		}
		if tb.OwnerLen(2) != 1 {
			t.Errorf("OwnerLen(2) after the sweep: got %d, want 1", tb.OwnerLen(2))
		}

	})
}

func TestNATConflict(t *testing.T) {
	tb := NewTable(Options{})
	mustCreate(t, tb, natSpec(tup(udp, privA, 5000, remote1, 53), tup(udp, eip, 5000, remote1, 53), 1), nil, t0)
	// Another private host mapped to the same public tuple.
	v := tb.Create(natSpec(tup(udp, privB, 5000, remote1, 53), tup(udp, eip, 5000, remote1, 53), 2), nil, t0)
	if v.Reason != ReasonNATConflict {
		t.Errorf("got %v, want nat_conflict", v.Reason)
	}
	if tb.Len() != 1 || tb.OwnerLen(2) != 0 {
		t.Errorf("Len %d OwnerLen(2) %d, want 1 0", tb.Len(), tb.OwnerLen(2))
	}
}

func TestPATIn(t *testing.T) {
	tb := NewTable(Options{})
	out := mustCreate(t, tb, patSpec(tup(udp, privA, 40000, remote1, 3478), 1), nil, t0)
	// Endpoint-independent filtering: another remote reaches the mapping.
	in := &Spec{Orig: tup(udp, remote2, 999, pub, out.To.SPort), To: tup(udp, remote2, 999, privA, 40000), PATIn: true, Owner: 1}
	v := mustCreate(t, tb, in, nil, t0+1)
	if v.To != in.To {
		t.Errorf("inbound: got To %v, want %v", v.To, in.To)
	}
	if r := tb.Track(tup(udp, privA, 40000, remote2, 999), nil, t0+1); !r.Found || r.Dir != Reply || r.To != tup(udp, pub, out.To.SPort, remote2, 999) {
		t.Errorf("reply to the inbound flow: got %+v", r)
	}
	// The mapping lives while either flow does.
	udpTO := uint32(DefaultTimeouts().UDP / time.Second)
	expireAll(tb, t0+udpTO+1)
	if _, _, ok := tb.pat.lookup(udp, pub, out.To.SPort); !ok || tb.Len() != 1 {
		t.Errorf("after the outbound flow expired: mapping %v Len %d, want true 1", ok, tb.Len())
	}
	streamTO := uint32(DefaultTimeouts().UDPStream / time.Second)
	expireAll(tb, t0+1+streamTO+1)
	if _, _, ok := tb.pat.lookup(udp, pub, out.To.SPort); ok || tb.Len() != 0 {
		t.Errorf("after both expired: mapping %v Len %d, want false 0", ok, tb.Len())
	}
	// A mapping of another endpoint does not admit a flow meant for this
	// one (a Lookup that raced with the port's reuse).
	other := mustCreate(t, tb, patSpec(tup(udp, privB, 41000, remote1, 3478), 1), nil, t0+1)
	wrong := &Spec{Orig: tup(udp, remote2, 999, pub, other.To.SPort), To: tup(udp, remote2, 999, privA, 40000), PATIn: true, Owner: 1}
	if v := tb.Create(wrong, nil, t0+1); v.Reason != ReasonUnsolicited {
		t.Errorf("inbound towards the wrong endpoint: got %v, want unsolicited", v.Reason)
	}
	tb.Flush(0)
	// No mapping, no inbound flow.
	if v := tb.Create(in, nil, t0+streamTO+3); v.Reason != ReasonUnsolicited {
		t.Errorf("inbound without a mapping: got %v, want unsolicited", v.Reason)
	}
}

func TestFlushAndFlows(t *testing.T) {
	tb := NewTable(Options{})
	for owner := uint32(1); owner <= 3; owner++ {
		for i := 0; i < 10; i++ {
			mustCreate(t, tb, patSpec(tup(udp, privA+owner, uint16(5000+i), remote1, 53), owner), nil, t0)
		}
	}
	mustCreate(t, tb, patSpec(tup(tcp, privA, 6000, remote1, 80), 1), &Seg{Flags: packet.TCPSyn, WScale: -1}, t0)
	count := func(owner uint32) (n int) {
		tb.Flows(owner, t0+5, func(fi FlowInfo) bool {
			if owner != 0 && fi.Owner != owner {
				t.Errorf("Flows(%d) listed a flow of owner %d", owner, fi.Owner)
			}
			n++
			return true
		})
		return n
	}
	if count(0) != 31 || count(1) != 11 || count(2) != 10 {
		t.Errorf("Flows: got %d all, %d owner 1, %d owner 2, want 31 11 10", count(0), count(1), count(2))
	}
	var tcpInfo FlowInfo
	tb.Flows(1, t0+5, func(fi FlowInfo) bool {
		if fi.Proto == tcp {
			tcpInfo = fi
		}
		return true
	})
	want := FlowInfo{Orig: tup(tcp, privA, 6000, remote1, 80), Reply: tup(tcp, remote1, 80, pub, 6000), Proto: tcp, State: "SYN_SENT", Owner: 1, PAT: true,
		Timeout: DefaultTimeouts().TCPTransitory - 5*time.Second}
	want.Original, want.Ref, want.Expires = want.Orig, tcpInfo.Ref, time.Unix(int64(t0)+int64(DefaultTimeouts().TCPTransitory/time.Second), 0)
	if tcpInfo != want {
		t.Errorf("FlowInfo: got %+v, want %+v", tcpInfo, want)
	}
	stop := 0
	tb.Flows(0, t0, func(FlowInfo) bool { stop++; return stop < 3 })
	if stop != 3 {
		t.Errorf("Flows stops when fn returns false: called %d times, want 3", stop)
	}
	if n := tb.Flush(2); n != 10 {
		t.Errorf("Flush(2): got %d, want 10", n)
	}
	if tb.Len() != 21 || tb.OwnerLen(2) != 0 || tb.OwnerLen(1) != 11 || tb.PATInUse(pub, udp) != 20 {
		t.Errorf("after Flush(2): Len %d OwnerLen(2) %d OwnerLen(1) %d InUse %d, want 21 0 11 20", tb.Len(), tb.OwnerLen(2), tb.OwnerLen(1), tb.PATInUse(pub, udp))
	}
	if n := tb.Flush(0); n != 21 || tb.Len() != 0 || tb.PATInUse(pub, udp)+tb.PATInUse(pub, tcp) != 0 {
		t.Errorf("Flush(0): removed %d, Len %d, want 21 0", n, tb.Len())
	}
	if got := tb.Counters.Deleted.Load(); got != 31 {
		t.Errorf("Deleted: got %d, want 31", got)
	}
}

func TestStats(t *testing.T) {
	tb := NewTable(Options{})
	const n = 100_000
	for i := 0; i < n; i++ {
		k := tup(udp, privA+uint32(i>>10), uint16(i), remote1, 53)
		mustCreate(t, tb, natSpec(k, Tuple{Src: eip + uint32(i>>10), Dst: remote1, SPort: uint16(i), DPort: 53, Proto: udp}, 0), nil, t0)
	}
	st := tb.Stats()
	if st.Flows != n || st.ArenaFlows < n || st.IndexSlots < 4*n || st.Bytes != st.IndexSlots*8+st.ArenaFlows*int(flowSize) {
		t.Errorf("Stats: got %+v, want %d flows, arena >= flows, index slots >= 2 per flow at <= half load", st, n)
	}
	if flowSize > 64 {
		t.Errorf("flow: %d bytes, want <= 64", flowSize)
	}
	// Arena chunks of 4096 flows per shard make small tables cost more
	// per flow; BenchmarkTrack reports bytes per flow at 1M flows.
	t.Logf("%d flows: %d bytes, %.1f bytes/flow (flow struct %d bytes)", n, st.Bytes, float64(st.Bytes)/n, flowSize)
}

func TestTupleAndNames(t *testing.T) {
	k := tup(tcp, privA, 40000, remote1, 443)
	if got := k.String(); got != "tcp 10.0.0.5:40000->198.51.100.7:443" {
		t.Errorf("String: got %q", got)
	}
	if got := k.Reverse(); got != tup(tcp, remote1, 443, privA, 40000) || got.Reverse() != k {
		t.Errorf("Reverse: got %v", got)
	}
	if k.SrcAddrPort().String() != "10.0.0.5:40000" || k.DstAddrPort().String() != "198.51.100.7:443" {
		t.Errorf("AddrPorts: got %v %v", k.SrcAddrPort(), k.DstAddrPort())
	}
	for p, want := range map[uint8]string{tcp: "tcp", udp: "udp", icmp: "icmp", 47: "proto-47"} {
		if got := ProtoName(p); got != want {
			t.Errorf("ProtoName(%d): got %q, want %q", p, got, want)
		}
	}
	if StateName(StateTimeWait) != "TIME_WAIT" || StateName(200) != "UNKNOWN" {
		t.Errorf("StateName: got %q %q", StateName(StateTimeWait), StateName(200))
	}
	tb := NewTable(Options{MaxFlows: 10, MaxOwners: 5})
	if tb.Max() != 10 || tb.MaxOwners() != 5 || tb.OwnerLen(6) != 0 {
		t.Errorf("Max %d MaxOwners %d OwnerLen(6) %d, want 10 5 0", tb.Max(), tb.MaxOwners(), tb.OwnerLen(6))
	}
	// An owner slot beyond MaxOwners is not charged (and not refused).
	sp := patSpec(tup(udp, privA, 1, remote1, 2), 9)
	sp.Budget = 1
	mustCreate(t, tb, sp, nil, t0)
	if tb.Len() != 1 {
		t.Errorf("Len: got %d, want 1", tb.Len())
	}
}
