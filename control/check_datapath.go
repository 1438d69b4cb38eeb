package control

import (
	"fmt"
	"reflect"
	"sort"

	vswitch "roam/switch"
)

// configReader is an optional interface of a DataPath that reports the
// config in force (vswitch.Switch.Config).
type configReader interface {
	Config() *vswitch.Config
}

// checkDataPathLocked compares the config the data path has in force with
// a full rebuild from the committed state (s.mu held): after any sequence
// of operations, and after a restart, the store and the data path agree.
// Records are compared by ID (the incremental path keeps them in another
// order than a rebuild), and Gen is not compared.
func (s *Service) checkDataPathLocked() []string {
	cr, ok := s.dp.(configReader)
	if !ok {
		return nil
	}
	got := cr.Config()
	if got == nil {
		return []string{"data path has no config"}
	}
	v := s.st.view()
	var recs []vswitch.Record
	for _, e := range sortedValues(s.st.enis) {
		recs = append(recs, s.record(v, e))
	}
	want := s.config(v, s.st.gen, recs)
	var bad []string
	g, w := *got, *want
	// Gen only labels a snapshot: operations that change nothing the
	// data path sees (allocating a public IP) do not republish.
	g.Records, w.Records, g.Gen, w.Gen = nil, nil, 0, 0
	if !reflect.DeepEqual(g, w) {
		bad = append(bad, fmt.Sprintf("data path config %+v, a rebuild from the store gives %+v", g, w))
	}
	byID := make(map[string]vswitch.Record, len(got.Records))
	for _, r := range got.Records {
		byID[r.ID] = r
	}
	for _, r := range want.Records {
		if s.pending[r.ID] != nil {
			delete(byID, r.ID) // its previous binding stays until its host effects complete
			continue
		}
		if gr, ok := byID[r.ID]; !ok {
			bad = append(bad, fmt.Sprintf("record %s not in the data path", r.ID))
		} else if !reflect.DeepEqual(gr, r) {
			bad = append(bad, fmt.Sprintf("record %s in the data path %+v, a rebuild from the store gives %+v", r.ID, gr, r))
		}
		delete(byID, r.ID)
	}
	extra := make([]string, 0, len(byID))
	for id := range byID {
		extra = append(extra, id)
	}
	sort.Strings(extra)
	for _, id := range extra {
		bad = append(bad, fmt.Sprintf("record %s in the data path, not in the store", id))
	}
	return bad
}
