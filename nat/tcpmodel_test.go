package nat

import (
	"math/rand/v2"
	"testing"

	"roam/internal/packet"
)

// TestTCPConversations drives random but valid TCP conversations through
// the table: handshake (normal or simultaneous open, with or without window
// scaling, sequence numbers near the wrap), data both ways with
// retransmissions, then a FIN close (either side first, or both at once) or
// a RST from either side. No segment of a valid conversation may be
// dropped, and the flow must end in TIME_WAIT or CLOSE.
func TestTCPConversations(t *testing.T) {
	const (
		S = packet.TCPSyn
		A = packet.TCPAck
		F = packet.TCPFin
		R = packet.TCPRst
	)
	n := 3000
	if testing.Short() {
		n = 300
	}
	tb := NewTable(Options{})
	for seed := 0; seed < n; seed++ {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		k := tup(tcp, privA, uint16(1024+seed), remote1, 443)
		var reply Tuple
		type side struct {
			nxt uint32 // SND.NXT
			una []uint32
			ws  int8
			win uint16
		}
		var sd [2]side
		sd[Orig].nxt, sd[Reply].nxt = -uint32(r.IntN(1<<16)), r.Uint32()
		scale := r.IntN(2) == 0
		for d := range sd {
			sd[d].ws = -1
			if scale {
				sd[d].ws = int8(r.IntN(15))
			}
			sd[d].win = uint16(1 + r.IntN(65535))
		}
		var log []string
		send := func(d Dir, flags uint8, n uint32, seq uint32) Verdict {
			s := &sd[d]
			seg := &Seg{Flags: flags, Seq: seq, Ack: sd[1-d].nxt, Len: n, Win: s.win, WScale: -1}
			if flags&S != 0 {
				seg.WScale = s.ws
			}
			if flags&A == 0 {
				seg.Ack = 0
			}
			kk := k
			if d == Reply {
				kk = reply
			}
			v := tb.Track(kk, seg, t0)
			if !v.Found && v.Reason == packet.ReasonNone && d == Orig {
				v = tb.Create(patSpec(k, 1), seg, t0)
				reply = v.To.Reverse()
			}
			log = append(log, StateName(v.State))
			if v.Reason != packet.ReasonNone || !v.Found {
				t.Fatalf("seed %d: segment from %d flags %#x seq %d len %d: got reason %v found %v (states %v)", seed, d, flags, seq, n, v.Reason, v.Found, log)
			}
			return v
		}
		emit := func(d Dir, flags uint8, n uint32) Verdict {
			s := &sd[d]
			seq := s.nxt
			s.una = append(s.una, seq)
			s.nxt += n
			if flags&(S|F) != 0 {
				s.nxt++
			}
			return send(d, flags, n, seq)
		}
		// Handshake.
		if r.IntN(5) == 0 {
			emit(Orig, S, 0)
			emit(Reply, S, 0)
			emit(Orig, S|A, 0)
			emit(Reply, S|A, 0)
		} else {
			emit(Orig, S, 0)
			emit(Reply, S|A, 0)
		}
		if v := emit(Orig, A, 0); v.State != StateEstablished {
			t.Fatalf("seed %d: after the handshake: %s", seed, StateName(v.State))
		}
		// Data, with retransmissions of earlier segments.
		for i := r.IntN(40); i > 0; i-- {
			d := Dir(r.IntN(2))
			if r.IntN(6) == 0 && len(sd[d].una) > 0 {
				send(d, A, 0, sd[d].una[r.IntN(len(sd[d].una))])
				continue
			}
			max := uint32(sd[1-d].win)
			if scale {
				max <<= uint32(sd[1-d].ws)
			}
			emit(d, A|packet.TCPPsh, uint32(r.Int64N(int64(max)+1)))
		}
		// Close.
		switch r.IntN(4) {
		case 0: // originator first
			emit(Orig, F|A, 0)
			emit(Reply, A, 0)
			emit(Reply, F|A, 0)
			if v := emit(Orig, A, 0); v.State != StateTimeWait {
				t.Fatalf("seed %d: close: %s (%v)", seed, StateName(v.State), log)
			}
		case 1: // responder first
			emit(Reply, F|A, 0)
			emit(Orig, A, 0)
			emit(Orig, F|A, 0)
			if v := emit(Reply, A, 0); v.State != StateTimeWait {
				t.Fatalf("seed %d: close: %s (%v)", seed, StateName(v.State), log)
			}
		case 2: // simultaneous
			emit(Orig, F|A, 0)
			emit(Reply, F|A, 0)
			emit(Orig, A, 0)
			if v := emit(Reply, A, 0); v.State != StateTimeWait {
				t.Fatalf("seed %d: close: %s (%v)", seed, StateName(v.State), log)
			}
		case 3: // reset
			d := Dir(r.IntN(2))
			if v := send(d, R|A, 0, sd[d].nxt); v.State != StateClose {
				t.Fatalf("seed %d: RST: %s", seed, StateName(v.State))
			}
		}
		// Port reuse: a new connection on the same tuple keeps the
		// translation.
		if r.IntN(2) == 0 {
			before := reply
			sd[Orig].nxt, sd[Reply].nxt = r.Uint32(), r.Uint32()
			if v := emit(Orig, S, 0); !v.New || v.State != StateSynSent || v.To.Reverse() != before {
				t.Fatalf("seed %d: reuse: got %+v, want a new SYN_SENT with reply %v", seed, v, before)
			}
			emit(Reply, S|A, 0)
			if v := emit(Orig, A, 0); v.State != StateEstablished {
				t.Fatalf("seed %d: reuse handshake: %s", seed, StateName(v.State))
			}
		}
	}
}
