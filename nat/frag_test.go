package nat

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

func fragKey(id uint16) FragKey { return FragKey{Src: privA, Dst: remote1, ID: id, Proto: udp} }

func TestFragKeyOf(t *testing.T) {
	s := spec(tup(udp, privA, 1, remote1, 2), make([]byte, 100))
	s.ID = 0xbeef
	fr := packettest.Fragment(packettest.Frame(s), 32)
	for i, f := range fr {
		if got := FragKeyOf(parse(t, f), f); got != fragKey(0xbeef) {
			t.Errorf("fragment %d: got %+v, want %+v", i, got, fragKey(0xbeef))
		}
	}
}

func TestFragsLearnLookup(t *testing.T) {
	fs := NewFrags(FragOptions{Timeout: 30e9})
	if _, _, _, ok := fs.Lookup(fragKey(1), t0); ok {
		t.Fatal("Lookup of an unknown datagram: ok")
	}
	if !fs.Learn(fragKey(1), packet.ReasonNone, pub, remote1, t0) {
		t.Fatal("Learn: false")
	}
	if !fs.Learn(fragKey(2), ReasonBudget, 0, 0, t0) {
		t.Fatal("Learn: false")
	}
	r, src, dst, ok := fs.Lookup(fragKey(1), t0+30)
	if !ok || r != packet.ReasonNone || src != pub || dst != remote1 {
		t.Errorf("Lookup(1): got %v %v %v %v, want none 203.0.113.1 198.51.100.7 true", r, packet.Addr(src), packet.Addr(dst), ok)
	}
	if r, _, _, ok := fs.Lookup(fragKey(2), t0); !ok || r != ReasonBudget {
		t.Errorf("Lookup(2): got %v %v, want sg_egress true", r, ok)
	}
	if _, _, _, ok := fs.Lookup(fragKey(1), t0+31); ok {
		t.Error("Lookup after the timeout: ok")
	}
	if n, _ := fs.Expire(t0 + 31); n != 2 || fs.Len() != 0 {
		t.Errorf("Expire: removed %d, Len %d, want 2 0", n, fs.Len())
	}
}

func TestFragsHoldDrain(t *testing.T) {
	fs := NewFrags(FragOptions{MaxHeld: 4, HeldSize: 128})
	k := fragKey(7)
	frames := [][]byte{[]byte("first"), []byte("second"), []byte("third")}
	for _, f := range frames {
		if !fs.Hold(k, f, t0) {
			t.Fatalf("Hold(%s): false", f)
		}
	}
	if fs.Hold(fragKey(8), make([]byte, 129), t0) {
		t.Error("Hold of a fragment larger than HeldSize: true")
	}
	if _, _, _, ok := fs.Lookup(k, t0); ok {
		t.Error("Lookup before the first fragment: ok")
	}
	if fs.Held() != 3 {
		t.Errorf("Held: got %d, want 3", fs.Held())
	}
	fs.Learn(k, packet.ReasonNone, pub, remote1, t0)
	var got [][]byte
	fs.Drain(k, func(b []byte) {
		got = append(got, append([]byte(nil), b...))
		// fn may use the table.
		if _, _, _, ok := fs.Lookup(k, t0); !ok {
			t.Error("Lookup inside Drain: not ok")
		}
	})
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", frames) {
		t.Errorf("Drain: got %q, want %q in arrival order", got, frames)
	}
	got = nil
	fs.Drain(k, func(b []byte) { got = append(got, b) })
	if len(got) != 0 {
		t.Errorf("second Drain: got %d fragments, want 0", len(got))
	}
	// The buffers are back: 4 more fit.
	for i := 0; i < 4; i++ {
		if !fs.Hold(fragKey(9), []byte{byte(i)}, t0) {
			t.Fatalf("Hold %d after Drain: false", i)
		}
	}
	if fs.Hold(fragKey(10), []byte{1}, t0) {
		t.Error("Hold beyond MaxHeld: true")
	}
	if d := fs.Drops(); d != 2 {
		t.Errorf("Drops: got %d, want 2", d)
	}
	// Expiry returns the buffers of timed-out datagrams and counts them.
	if !fs.Hold(fragKey(10), []byte{1}, t0+31) {
		t.Error("Hold after the held fragments timed out: false")
	}
	if d := fs.Drops(); d != 2+4 {
		t.Errorf("Drops after expiry: got %d, want 6", d)
	}
}

// TestFragsHoldExpiresOwnEntry: when the pool is full and the datagram
// the new fragment belongs to has itself timed out, its old fragments are
// dropped and the new one starts a fresh list.
func TestFragsHoldExpiresOwnEntry(t *testing.T) {
	fs := NewFrags(FragOptions{MaxHeld: 2, HeldSize: 16})
	k := fragKey(1)
	fs.Hold(k, []byte("old1"), t0)
	fs.Hold(k, []byte("old2"), t0)
	if !fs.Hold(k, []byte("new"), t0+100) {
		t.Fatal("Hold: false")
	}
	if !fs.Hold(k, []byte("new2"), t0+100) {
		t.Fatal("Hold: false")
	}
	fs.Learn(k, packet.ReasonNone, 0, 0, t0+100)
	var got []string
	fs.Drain(k, func(b []byte) { got = append(got, string(b)) })
	if fmt.Sprint(got) != "[new new2]" {
		t.Errorf("Drain: got %v, want [new new2]", got)
	}
	// Every buffer is free again, once.
	if len(fs.freeH) != 2 || fs.freeH[0] == fs.freeH[1] {
		t.Errorf("free list: %v, want two distinct buffers", fs.freeH)
	}
}

func TestFragsBounded(t *testing.T) {
	fs := NewFrags(FragOptions{MaxDatagrams: 8, MaxHeld: 4, HeldSize: 64})
	for i := 0; i < 8; i++ {
		if !fs.Learn(fragKey(uint16(i)), packet.ReasonNone, 0, 0, t0) {
			t.Fatalf("Learn %d: false", i)
		}
	}
	if fs.Learn(fragKey(100), packet.ReasonNone, 0, 0, t0) {
		t.Error("Learn beyond MaxDatagrams: true")
	}
	if fs.Hold(fragKey(101), []byte{1}, t0) {
		t.Error("Hold of a new datagram beyond MaxDatagrams: true")
	}
	if fs.Len() != 8 {
		t.Errorf("Len: got %d, want 8", fs.Len())
	}
	// After the timeout, new datagrams push out expired ones.
	if !fs.Learn(fragKey(100), packet.ReasonNone, 0, 0, t0+31) || fs.Len() != 1 {
		t.Errorf("Learn after expiry: Len %d, want 1", fs.Len())
	}
}

// TestFragsTranslate runs a fragmented datagram through Learn, Hold,
// Lookup and Rewrite, out of order, and checks every fragment comes out
// translated.
func TestFragsTranslate(t *testing.T) {
	tb := NewTable(Options{})
	fs := NewFrags(FragOptions{})
	k := tup(udp, privA, 5353, remote1, 53)
	big := bytes.Repeat([]byte("abcdefgh"), 50)
	s := spec(k, big)
	frags := packettest.Fragment(packettest.Frame(s), 128)
	v := mustCreate(t, tb, patSpec(k, 1), nil, t0)
	ws := spec(v.To, big)
	want := packettest.Fragment(packettest.Frame(ws), 128)
	var out [][]byte
	forward := func(f []byte) {
		p := parse(t, f)
		r, nsrc, ndst, ok := fs.Lookup(FragKeyOf(p, f), t0)
		if !ok || r != packet.ReasonNone {
			t.Fatalf("Lookup: %v %v", r, ok)
		}
		Rewrite(f, p, Tuple{Src: p.Src, Dst: p.Dst, Proto: p.Proto}, Tuple{Src: nsrc, Dst: ndst, Proto: p.Proto}, false)
		out = append(out, append([]byte(nil), f...))
	}
	// The last fragment arrives first.
	last := frags[len(frags)-1]
	if !fs.Hold(FragKeyOf(parse(t, last), last), last, t0) {
		t.Fatal("Hold: false")
	}
	first := frags[0]
	p := parse(t, first)
	Rewrite(first, p, k, v.To, false)
	fs.Learn(FragKeyOf(p, first), v.Reason, v.To.Src, v.To.Dst, t0)
	fs.Drain(FragKeyOf(p, first), forward)
	for _, f := range frags[1 : len(frags)-1] {
		forward(f)
	}
	diff(t, "first fragment", first, want[0])
	if len(out) != len(frags)-1 {
		t.Fatalf("got %d later fragments, want %d", len(out), len(frags)-1)
	}
	diff(t, "last fragment (held)", out[0], want[len(want)-1])
	for i, f := range out[1:] {
		diff(t, fmt.Sprintf("fragment %d", i+1), f, want[i+1])
	}
}

func TestFragsConcurrent(t *testing.T) {
	fs := NewFrags(FragOptions{MaxDatagrams: 64, MaxHeld: 16, HeldSize: 32})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				k := fragKey(uint16(i % 100))
				now := uint32(t0 + i/50)
				switch (g + i) % 4 {
				case 0:
					fs.Hold(k, []byte{byte(i)}, now)
				case 1:
					fs.Learn(k, packet.ReasonNone, 1, 2, now)
				case 2:
					fs.Drain(k, func(b []byte) {
						if len(b) != 1 {
							t.Errorf("held fragment of %d bytes, want 1", len(b))
						}
					})
				case 3:
					fs.Lookup(k, now)
					fs.Expire(now)
				}
			}
		}()
	}
	wg.Wait()
	fs.Expire(t0 + 1000)
	if fs.Len() != 0 || len(fs.freeH) != 16 {
		t.Errorf("after expiry: Len %d, free buffers %d, want 0 16", fs.Len(), len(fs.freeH))
	}
	seen := map[int32]bool{}
	for _, i := range fs.freeH {
		if seen[i] {
			t.Fatalf("buffer %d twice on the free list", i)
		}
		seen[i] = true
	}
}
