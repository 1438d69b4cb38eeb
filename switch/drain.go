package vswitch

import "time"

// DefaultDrainGrace is how long a port a record was moved away from may
// still send on the record's established flows (Options.DrainGrace).
const DefaultDrainGrace = 500 * time.Millisecond

// drain lets the port a record just left finish sending what it had in
// flight: for a short grace period, frames from that port that belong to
// one of the record's established flows are forwarded as the record's.
// Nothing is ever delivered to the old port (the record's IPs resolve to
// its new attachment at once), no new flow can start from it, and a port
// that gets another record attached stops draining at once.
type drain struct {
	rec   *recEntry // the record's entry in the snapshot that holds the drain
	until int64     // Unix nanoseconds
}

// inheritDrains sets the drains of snapshot s, which replaces prev at now:
// those of prev still running, and one for each port in moved (ports whose
// record prev had and s no longer attaches there) whose record still
// exists. Ports attached to a record in s never drain.
func (s *Snapshot) inheritDrains(prev *Snapshot, moved []*portState, now int64, grace time.Duration) {
	if prev == nil || grace <= 0 {
		return
	}
	var d map[*portState]drain
	add := func(ps *portState, id string, until int64) {
		if s.ports.at(ps) != nil {
			return
		}
		r := s.records.at(id)
		if r == nil {
			return
		}
		if d == nil {
			d = make(map[*portState]drain)
		}
		d[ps] = drain{rec: r, until: until}
	}
	for ps, dr := range prev.draining {
		if dr.until > now {
			add(ps, dr.rec.id, dr.until)
		}
	}
	for _, ps := range moved {
		if old := prev.ports.at(ps); old != nil {
			add(ps, old.id, now+int64(grace))
		}
	}
	s.draining = d
}

// allPorts lists the ports of a snapshot's records (a full Apply may move
// any of them).
func (s *Snapshot) allPorts() []*portState {
	out := make([]*portState, 0, s.ports.len())
	for ps := range s.ports.all() {
		out = append(out, ps)
	}
	return out
}
