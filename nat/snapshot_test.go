package nat

import (
	"errors"
	"sort"
	"testing"

	"roam/internal/packet"
)

// listFlows returns every flow of tb, sorted, with the owner mapped by
// owner (nil keeps it).
func listFlows(tb *Table, now uint32) []FlowInfo {
	var out []FlowInfo
	tb.Flows(0, now, func(fi FlowInfo) bool {
		fi.Ref = 0
		out = append(out, fi)
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Orig.String() < out[j].Orig.String() })
	return out
}

// fillTable creates a mix of flows: a TCP connection through PAT that
// reached ESTABLISHED, UDP through PAT both ways, an ICMP query, a 1:1
// inbound flow, and one PAT port freed and on hold.
func fillTable(t *testing.T, tb *Table) (est *conn) {
	est = newConn(t, tb, patSpec(tup(tcp, privA, 40000, remote1, 443), 1))
	est.send(Orig, packet.TCPSyn, 100, 0, 0, t0)
	est.send(Reply, packet.TCPSyn|packet.TCPAck, 500, 101, 0, t0)
	if v := est.send(Orig, packet.TCPAck, 101, 501, 0, t0); v.State != StateEstablished {
		t.Fatalf("setup: state %s, want ESTABLISHED", StateName(v.State))
	}
	v := mustCreate(t, tb, patSpec(tup(udp, privB, 5000, remote1, 53), 2), nil, t0)
	tb.Track(v.To.Reverse(), nil, t0)
	mustCreate(t, tb, patSpec(tup(icmp, privA, 77, remote2, 0), 1), nil, t0)
	mustCreate(t, tb, natSpec(tup(tcp, remote2, 6000, eip, 22), tup(tcp, remote2, 6000, privC, 22), 3), &Seg{Flags: packet.TCPSyn, Seq: 9, Win: 1000, WScale: -1}, t0)
	mustCreate(t, tb, patSpec(tup(udp, privC, 7000, remote2, 53), 3), nil, t0)
	tb.Flush(3)                                                                                                                                                        // frees 7000's mapping: on hold now
	mustCreate(t, tb, natSpec(tup(tcp, remote2, 6000, eip, 22), tup(tcp, remote2, 6000, privC, 22), 3), &Seg{Flags: packet.TCPSyn, Seq: 9, Win: 1000, WScale: -1}, t0) // and again

	return est
}

func TestExportImport(t *testing.T) {
	old := NewTable(Options{})
	est := fillTable(t, old)
	snap := old.Export(t0 + 1)
	b, err := snap.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	tb := NewTable(Options{})
	n, err := tb.Import(&back, t0+1, func(o uint32) uint32 { return o + 10 })
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if n != old.Len() || tb.Len() != old.Len() {
		t.Fatalf("imported %d flows, table has %d, want %d", n, tb.Len(), old.Len())
	}
	want, got := listFlows(old, t0+1), listFlows(tb, t0+1)
	for i := range want {
		want[i].Owner += 10
		if got[i] != want[i] {
			t.Errorf("flow %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, o := range []uint32{1, 2, 3} {
		if g, w := tb.OwnerLen(o+10), old.OwnerLen(o); g != w {
			t.Errorf("owner %d: %d flows, want %d", o+10, g, w)
		}
	}
	// The established connection carries on: a data segment in window
	// from each side is accepted and keeps ESTABLISHED.
	est.tb = tb
	if v := est.send(Orig, packet.TCPAck|packet.TCPPsh, 101, 501, 100, t0+2); v.Reason != packet.ReasonNone || v.New || v.State != StateEstablished {
		t.Fatalf("after import: orig data got %+v, want forwarded in ESTABLISHED", v)
	}
	if v := est.send(Reply, packet.TCPAck, 501, 201, 0, t0+2); v.Reason != packet.ReasonNone || v.Dir != Reply {
		t.Fatalf("after import: reply got %+v", v)
	}
	// PAT: the mapping is kept (the same port for a new flow of the same
	// endpoint), the port in use is not handed to another endpoint, and
	// the port on hold stays held (REQ-8).
	for _, proto := range []uint8{tcp, udp, icmp} {
		if g, w := tb.PATInUse(pub, proto), old.PATInUse(pub, proto); g != w {
			t.Errorf("PAT %s ports in use: got %d, want %d", ProtoName(proto), g, w)
		}
	}
	v := mustCreate(t, tb, patSpec(tup(tcp, privA, 40000, remote2, 80), 1), &Seg{Flags: packet.TCPSyn, Win: 1, WScale: -1}, t0+2)
	if v.To.SPort != 40000 {
		t.Errorf("same endpoint after import: port %d, want the mapping's 40000", v.To.SPort)
	}
	v = mustCreate(t, tb, patSpec(tup(tcp, privB, 40000, remote2, 80), 2), &Seg{Flags: packet.TCPSyn, Win: 1, WScale: -1}, t0+2)
	if v.To.SPort == 40000 {
		t.Errorf("another endpoint after import got port 40000, held by %v", packet.Addr(privA))
	}
	v = mustCreate(t, tb, patSpec(tup(udp, privB, 7000, remote2, 53), 2), nil, t0+2)
	if v.To.SPort == 7000 {
		t.Errorf("port 7000 freed at %d was handed out again at %d (REQ-8 hold lost)", t0, t0+2)
	}
	// Expiry survives: nothing is left once every timeout has passed.
	tb.Expire(t0+1<<20, 1<<20)
	if tb.Len() != 0 {
		t.Errorf("after every timeout: %d flows left", tb.Len())
	}
	for _, proto := range []uint8{tcp, udp, icmp} {
		if n := tb.PATInUse(pub, proto); n != 0 {
			t.Errorf("after every timeout: %d %s PAT ports in use", n, ProtoName(proto))
		}
	}
}

func TestImportSkipsExpiredAndConflicts(t *testing.T) {
	old := NewTable(Options{})
	fillTable(t, old)
	snap := old.Export(t0)
	tb := NewTable(Options{})
	// Late by more than the UDP and ICMP timeouts, within the TCP ones.
	late := uint32(t0 + 400)
	n, err := tb.Import(snap, late, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range listFlows(tb, late) {
		if fi.Proto != tcp {
			t.Errorf("expired %v imported", fi.Orig)
		}
	}
	if n == 0 || n != tb.Len() {
		t.Errorf("imported %d, table has %d", n, tb.Len())
	}
	// Importing again adds nothing: every flow collides with itself.
	if n, err := tb.Import(snap, late, nil); err != nil || n != 0 {
		t.Errorf("second import: %d flows, %v; want 0, nil", n, err)
	}
	// A PAT port held by another endpoint in the target keeps its owner.
	tb2 := NewTable(Options{})
	mustCreate(t, tb2, patSpec(tup(tcp, privC, 40000, remote2, 9), 3), &Seg{Flags: packet.TCPSyn, Win: 1, WScale: -1}, t0)
	if _, err := tb2.Import(snap, t0, nil); err != nil {
		t.Fatal(err)
	}
	if priv, port, _ := tb2.pat.lookup(tcp, pub, 40000); priv != privC || port != 40000 {
		t.Errorf("port 40000 after import: %v:%d, want the target's own %v:40000", packet.Addr(priv), port, packet.Addr(privC))
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	old := NewTable(Options{})
	fillTable(t, old)
	good, _ := old.Export(t0).MarshalBinary()
	flip := func(i int) []byte { b := append([]byte(nil), good...); b[i] ^= 0x40; return b }
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"not a snapshot", []byte("hello, world, this is not conntrack")},
		{"truncated", good[:len(good)-9]},
		{"trailing bytes", append(append([]byte(nil), good...), 0)},
		{"version", flip(6)},
		{"flow count", flip(8)},
		{"a flipped bit in a flow", flip(snapHeader + 3)},
		{"a flipped checksum", flip(len(good) - 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Snapshot
			err := s.UnmarshalBinary(tc.b)
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("got %v, want an error wrapping ErrBadSnapshot", err)
			}
		})
	}
	// A record that decodes but is invalid is refused by Import too, and
	// nothing of the snapshot is added.
	s := old.Export(t0)
	s.Flows[len(s.Flows)-1].State = 200
	tb := NewTable(Options{})
	if n, err := tb.Import(s, t0, nil); !errors.Is(err, ErrBadSnapshot) || n != 0 || tb.Len() != 0 {
		t.Fatalf("invalid record: imported %d (table %d), err %v; want 0 and ErrBadSnapshot", n, tb.Len(), err)
	}
}

func FuzzSnapshotUnmarshal(f *testing.F) {
	old := NewTable(Options{})
	est := newConn(nil, old, patSpec(tup(tcp, privA, 40000, remote1, 443), 1))
	est.send(Orig, packet.TCPSyn, 100, 0, 0, t0)
	b, _ := old.Export(t0).MarshalBinary()
	f.Add(b)
	f.Add([]byte("ROAMCT"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Snapshot
		if s.UnmarshalBinary(b) != nil {
			return
		}
		tb := NewTable(Options{MaxFlows: 64})
		if _, err := tb.Import(&s, t0, nil); err != nil {
			t.Fatalf("a decoded snapshot was refused by Import: %v", err)
		}
		tb.Expire(1<<31, 1<<20)
		if tb.Len() != 0 {
			t.Fatalf("%d flows left after expiring everything", tb.Len())
		}
	})
}
