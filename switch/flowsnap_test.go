package vswitch

import (
	"bytes"
	"errors"
	"slices"
	"sort"
	"testing"
)

// TestExportImportFlows saves the flows of a switch and restores them in a
// new one where the records got other owner slots (they appear in another
// order): every flow comes back charged to the same record, with the same
// translation, and carries on.
func TestExportImportFlows(t *testing.T) {
	w := newWorld(t, Options{})
	rem := ap(remote, 40000)
	w.send("uplink", tcpFrame(t, macUp, gwMAC, rem, ap(eipA, 80), "S", 100, 0, nil))
	w.recv("vmA")
	w.send("vmA", tcpFrame(t, macA, gwMAC, ap(ipA, 80), rem, "SA", 700, 101, nil))
	w.recv("uplink")
	w.send("uplink", tcpFrame(t, macUp, gwMAC, rem, ap(eipA, 80), "A", 101, 701, nil))
	w.recv("vmA")
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 5353), ap(remote, 53), []byte("q")))
	w.recv("uplink")
	w.send("vmC", udpFrame(t, macC, gwMAC, ap(ipC, 7), ap(ipB, 9), []byte("x")))
	w.recv("vmB")
	before := flowList(w.sw)
	if len(before) != 3 {
		t.Fatalf("setup: %d flows, want 3: %v", len(before), before)
	}
	var buf bytes.Buffer
	n, err := w.sw.ExportFlows(&buf)
	if err != nil || n != 3 {
		t.Fatalf("ExportFlows: %d, %v; want 3, nil", n, err)
	}
	saved := buf.Bytes()

	// A new switch where the records got other owner slots.
	sw := New(Options{Now: w.clk.Now})
	for _, id := range []string{"eni-0000001e", "eni-00000014"} {
		sw.recordState(id)
	}
	got, err := sw.ImportFlows(bytes.NewReader(saved))
	if err != nil || got != 3 {
		t.Fatalf("ImportFlows: %d, %v; want 3, nil", got, err)
	}
	after := flowList(sw)
	if !slices.Equal(before, after) {
		t.Errorf("flows after import:\n%v\nwant\n%v", after, before)
	}
	for _, id := range []string{"eni-0000000a", "eni-00000014", "eni-0000001e"} {
		if g, want := sw.RecordCounters(id).Flows, w.sw.RecordCounters(id).Flows; g != want {
			t.Errorf("%s: %d flows charged after import, want %d", id, g, want)
		}
	}

	// Corrupt files are refused and change nothing.
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"garbage", []byte("this is not a flow snapshot at all")},
		{"truncated", saved[:len(saved)-10]},
		{"flipped bit", func() []byte { b := slices.Clone(saved); b[len(b)/2] ^= 1; return b }()},
	} {
		sw := New(Options{Now: w.clk.Now})
		if n, err := sw.ImportFlows(bytes.NewReader(tc.b)); !errors.Is(err, ErrBadFlowSnapshot) || n != 0 || sw.Conntrack().Len() != 0 {
			t.Errorf("%s: imported %d (table %d), err %v; want 0 and ErrBadFlowSnapshot", tc.name, n, sw.Conntrack().Len(), err)
		}
	}
}

// flowList lists a switch's flows as comparable strings (record, tuples,
// state), sorted.
func flowList(sw *Switch) []string {
	var out []string
	for _, f := range sw.Flows("") {
		out = append(out, f.Record+" "+f.Raw.Orig.String()+" / "+f.Raw.Reply.String()+" "+f.State)
	}
	sort.Strings(out)
	return out
}
