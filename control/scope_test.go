package control

import (
	"slices"
	"testing"
)

// flowsInspector is an Inspector with one flow per record it knows.
type flowsInspector struct{ ids []string }

func (fi flowsInspector) Flows(id string) []Flow {
	var out []Flow
	for _, x := range fi.ids {
		if id == "" || id == x {
			out = append(out, Flow{Proto: "udp", ENIID: x})
		}
	}
	return out
}
func (fi flowsInspector) FlushFlows(string) int { return 0 }
func (fi flowsInspector) Stats(id string) Stats {
	return Stats{ID: id, PacketsOut: 1, Drops: map[string]uint64{"source_check": 1}}
}

// TestScopeManyRecordsAndEvents: a caller with more records than Flows
// lists one by one, and more audit events than Events reads from the store
// at a time, gets exactly its own, in order, and pages through them.
func TestScopeManyRecordsAndEvents(t *testing.T) {
	f := newFixture(t, nil)
	s := f.svc
	alice, bob := Principal{UID: 1000}, Principal{UID: 2000}
	sn := ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.0.0.0/22"}))
	var mine, all []string
	for i := range 2*eventBatch + 10 {
		p := bob
		if i%3 == 0 {
			p = alice
		}
		e := ok(s.CreateENI(p, CreateENIInput{SubnetID: sn.ID}))
		all = append(all, e.ID)
		if p == alice {
			mine = append(mine, e.ID)
		}
	}
	slices.Sort(mine)
	slices.Sort(all)
	if len(mine) <= perRecordScans {
		t.Fatalf("setup: %d records, want more than %d", len(mine), perRecordScans)
	}
	sc := s.As(alice)
	insp := flowsInspector{ids: all}
	flows := ok(sc.Flows(insp, ""))
	var got []string
	for _, fl := range flows {
		got = append(got, fl.ENIID)
	}
	if !slices.Equal(got, mine) {
		t.Errorf("flows of %d records, want alice's %d", len(got), len(mine))
	}
	st := ok(sc.Stats(insp, ""))
	if st.ID != "uid:1000" || st.PacketsOut != uint64(len(mine)) || st.Drops["source_check"] != uint64(len(mine)) {
		t.Errorf("stats %+v, want the sum of alice's %d records", st, len(mine))
	}

	evs := ok(sc.Events(0, 0))
	if len(evs) != len(mine) {
		t.Fatalf("alice's events: %d, want %d (her creates)", len(evs), len(mine))
	}
	for _, ev := range evs {
		if ev.UID != alice.UID {
			t.Fatalf("event %+v shown to alice", ev)
		}
	}
	var paged []Event
	for after := uint64(0); ; {
		page := ok(sc.Events(after, 7))
		if len(page) == 0 {
			break
		}
		if len(page) > 7 {
			t.Fatalf("page of %d, want at most 7", len(page))
		}
		paged = append(paged, page...)
		after = page[len(page)-1].ID
	}
	if !slices.Equal(paged, evs) {
		t.Errorf("paged events (%d) differ from all of them (%d)", len(paged), len(evs))
	}
	if n := len(ok(s.As(Root).Events(0, 0))); n != len(all)+1 {
		t.Errorf("root's events: %d, want %d", n, len(all)+1)
	}
}
