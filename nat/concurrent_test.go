package nat

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"roam/internal/packet"
)

// checkInvariants checks what must hold whenever the table is quiet: Len
// equals the flows listed and Stats' count, owner counts add up, each PAT
// mapping in use is referenced by a listed flow and maps back to its
// private endpoint, and no limit is exceeded.
func checkInvariants(t *testing.T, tb *Table, now uint32, owners int, budget int32) {
	t.Helper()
	listed := 0
	perOwner := map[uint32]int{}
	type mkey struct {
		proto uint8
		pub   uint32
		port  uint16
	}
	mappings := map[mkey]Tuple{} // -> private endpoint (as a tuple's source)
	tb.Flows(0, now, func(fi FlowInfo) bool {
		listed++
		perOwner[fi.Owner]++
		if fi.PAT {
			// Outbound: the reply comes back to the mapping.
			m := mkey{fi.Proto, fi.Reply.Dst, fi.Reply.DPort}
			ep := Tuple{Src: fi.Orig.Src, SPort: fi.Orig.SPort}
			if fi.Orig.Dst == pub { // inbound, admitted through a mapping
				m = mkey{fi.Proto, fi.Orig.Dst, fi.Orig.DPort}
				ep = Tuple{Src: fi.Reply.Src, SPort: fi.Reply.SPort}
			}
			if prev, ok := mappings[m]; ok && prev != ep {
				t.Errorf("public %v/%d used by %v and %v", packet.Addr(m.pub), m.port, prev.SrcAddrPort(), ep.SrcAddrPort())
			}
			mappings[m] = ep
		}
		return true
	})
	if listed != tb.Len() || tb.Stats().Flows != listed {
		t.Errorf("Len %d, listed %d, Stats().Flows %d, want all equal", tb.Len(), listed, tb.Stats().Flows)
	}
	if tb.Len() > tb.Max() {
		t.Errorf("Len %d > Max %d", tb.Len(), tb.Max())
	}
	sum := 0
	for o := 1; o <= owners; o++ {
		n := tb.OwnerLen(uint32(o))
		sum += n
		if n != perOwner[uint32(o)] {
			t.Errorf("OwnerLen(%d): got %d, listed %d", o, n, perOwner[uint32(o)])
		}
		if budget > 0 && n > int(budget) {
			t.Errorf("OwnerLen(%d) = %d over budget %d", o, n, budget)
		}
	}
	if sum != listed {
		t.Errorf("owner counts add up to %d, want %d", sum, listed)
	}
	inUse := map[uint8]int{}
	for m, ep := range mappings {
		inUse[m.proto]++
		a, port, ok := tb.pat.lookup(m.proto, m.pub, m.port)
		if !ok || a != ep.Src || port != ep.SPort {
			t.Errorf("PAT %d/%d: Lookup got %v:%d %v, flows say %v", m.proto, m.port, packet.Addr(a), port, ok, ep.SrcAddrPort())
		}
	}
	for _, proto := range []uint8{tcp, udp, icmp} {
		if got := tb.PATInUse(pub, proto); got != inUse[proto] {
			t.Errorf("PAT InUse(%d): got %d, flows reference %d mappings", proto, got, inUse[proto])
		}
	}
}

// TestConcurrent runs creating, tracking (both directions), expiring and
// flushing goroutines over overlapping keys, with a global limit and
// budgets that are hit, and checks the invariants at the end and once
// everything expired. Run it with -race.
func TestConcurrent(t *testing.T) {
	const (
		owners  = 4
		budget  = 40
		workers = 8
	)
	iters := 20000
	if testing.Short() {
		iters = 3000
	}
	tb := NewTable(Options{MaxFlows: 120, PAT: PATOptions{Search: 64}})
	var clock atomic.Uint32
	clock.Store(t0)
	var wg sync.WaitGroup
	var maxSeen atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			var replies []Tuple
			for i := 0; i < iters; i++ {
				now := clock.Load()
				if r.IntN(50) == 0 {
					now = clock.Add(uint32(r.IntN(30)))
				}
				owner := uint32(1 + r.IntN(owners))
				proto := []uint8{tcp, udp, icmp}[r.IntN(3)]
				priv := privA + owner
				port := uint16(1000 + r.IntN(64))
				rem := remote1 + uint32(r.IntN(3))
				k := tup(proto, priv, port, rem, 80)
				if proto == icmp {
					k.DPort = 0
				}
				var seg *Seg
				if proto == tcp {
					seg = &Seg{Flags: []uint8{packet.TCPSyn, packet.TCPAck, packet.TCPSyn | packet.TCPAck, packet.TCPFin | packet.TCPAck, packet.TCPRst}[r.IntN(5)],
						Seq: r.Uint32(), Ack: r.Uint32(), Win: 1000, WScale: -1}
				}
				switch op := r.IntN(100); {
				case op < 35:
					var sp *Spec
					if r.IntN(4) == 0 { // 1:1 to the owner's public address
						sp = natSpec(k, Tuple{Src: eip + owner, Dst: k.Dst, SPort: k.SPort, DPort: k.DPort, Proto: k.Proto}, owner)
					} else {
						sp = patSpec(k, owner)
					}
					sp.Budget = budget
					v := tb.Track(k, seg, now)
					if !v.Found && v.Reason == packet.ReasonNone {
						v = tb.Create(sp, seg, now)
					}
					if v.Found && v.Dir == Orig && len(replies) < 256 {
						replies = append(replies, v.To.Reverse())
					}
				case op < 75:
					if len(replies) > 0 {
						tb.Track(replies[r.IntN(len(replies))], seg, now)
					}
				case op < 85:
					if len(replies) > 0 {
						tb.Peek(replies[r.IntN(len(replies))], now)
					}
				case op < 97:
					tb.Expire(now, 1+r.IntN(16))
				case op < 98:
					if r.IntN(20) == 0 {
						tb.Flush(owner)
					}
				default:
					n := 0
					tb.Flows(owner, now, func(FlowInfo) bool { n++; return n < 10 })
				}
				if n := int64(tb.Len()); n > maxSeen.Load() {
					maxSeen.Store(n)
				}
				if o := tb.OwnerLen(owner); o > budget {
					t.Errorf("OwnerLen(%d) = %d over budget %d", owner, o, budget)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if m := maxSeen.Load(); m > int64(tb.Max()) {
		t.Errorf("Len reached %d, Max %d", m, tb.Max())
	}
	t.Logf("created %d, refused %d, expired %d, deleted %d, revived %d; %d flows left, max seen %d",
		tb.Counters.Created.Load(), tb.Counters.Refused.Load(), tb.Counters.Expired.Load(), tb.Counters.Deleted.Load(), tb.Counters.Revived.Load(), tb.Len(), maxSeen.Load())
	now := clock.Load()
	checkInvariants(t, tb, now, owners, budget)
	// Everything expires: nothing is left, no port leaked.
	late := now + uint32(DefaultTimeouts().TCPEstablished.Seconds()) + 1
	expireAll(tb, late)
	checkInvariants(t, tb, late, owners, budget)
	if tb.Len() != 0 {
		t.Errorf("after expiry: Len %d, want 0", tb.Len())
	}
	for _, proto := range []uint8{tcp, udp, icmp} {
		if n := tb.PATInUse(pub, proto); n != 0 {
			t.Errorf("after expiry: %d PAT mappings of proto %d leaked", n, proto)
		}
	}
	for _, p := range tb.pat.pools {
		p.mu.Lock()
		for port, e := range p.ports {
			if e.refs != 0 {
				t.Errorf("port %d: %d references leaked", port, e.refs)
			}
		}
		if len(p.fwd) != 0 {
			t.Errorf("%d forward mappings leaked", len(p.fwd))
		}
		p.mu.Unlock()
	}
}

// TestConcurrentSameFlow: goroutines racing to create the same flow end up
// with one flow, one translation and one reference on its PAT mapping.
func TestConcurrentSameFlow(t *testing.T) {
	for round := 0; round < 50; round++ {
		tb := NewTable(Options{})
		k := tup(udp, privA, uint16(5000+round), remote1, 53)
		var wg sync.WaitGroup
		var news atomic.Int32
		tos := make([]Tuple, 8)
		for g := range tos {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := tb.Create(patSpec(k, 1), nil, t0)
				if v.Reason != packet.ReasonNone || !v.Found {
					t.Errorf("goroutine %d: got %+v", g, v)
				}
				if v.New {
					news.Add(1)
				}
				tos[g] = v.To
			}()
		}
		wg.Wait()
		if news.Load() != 1 || tb.Len() != 1 || tb.PATInUse(pub, udp) != 1 {
			t.Fatalf("round %d: %d new, Len %d, InUse %d, want 1 1 1", round, news.Load(), tb.Len(), tb.PATInUse(pub, udp))
		}
		for g, to := range tos {
			if to != tos[0] {
				t.Fatalf("round %d: goroutine %d got %v, goroutine 0 %v", round, g, to, tos[0])
			}
		}
		tb.Flush(0)
		if tb.PATInUse(pub, udp) != 0 {
			t.Fatalf("round %d: mapping left after Flush", round)
		}
	}
}

// TestConcurrentRefreshVsExpire: a flow kept alive by packets is never
// removed by a concurrent sweep.
func TestConcurrentRefreshVsExpire(t *testing.T) {
	tb := NewTable(Options{Timeouts: Timeouts{UDP: 2e9, UDPStream: 2e9}})
	k := tup(udp, privA, 5000, remote1, 53)
	v := mustCreate(t, tb, patSpec(k, 1), nil, t0)
	var clock atomic.Uint32
	clock.Store(t0)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
				tb.Expire(clock.Load(), 1<<20)
			}
		}
	}()
	for i := 0; i < 20000; i++ {
		now := clock.Load()
		if i%100 == 0 {
			now = clock.Add(1) // refreshed every second of the test's clock
		}
		dir := []Tuple{k, v.To.Reverse()}[i%2]
		if r := tb.Track(dir, nil, now); !r.Found || r.New {
			t.Fatalf("packet %d at %d: got %+v, want the live flow", i, now, r)
		}
	}
	close(done)
	wg.Wait()
}
