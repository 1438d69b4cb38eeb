package vswitch

import "roam/internal/packet"

// RestoreRecordCounters adds c, counters of record id as RecordCounters
// returned them in a previous process, to the record's counters: packets
// and bytes in and out, ICMP errors sent and suppressed, and drops by
// reason (a reason this switch does not know is skipped and returned). The daemon calls it after a graceful
// restart, before Start, so that a record's counters continue instead of
// starting over. Packets, Flows and the switch-wide fields of c are
// ignored: they are derived or live.
func (s *Switch) RestoreRecordCounters(id string, c Counters) (unknown []string, err error) {
	st, err := s.recordState(id)
	if err != nil {
		return nil, err
	}
	st.c.packetsIn.Add(c.PacketsIn)
	st.c.packetsOut.Add(c.PacketsOut)
	st.c.bytesIn.Add(c.BytesIn)
	st.c.bytesOut.Add(c.BytesOut)
	st.c.icmpSent.Add(c.ICMPSent)
	st.c.icmpLimited.Add(c.ICMPLimited)
	for name, n := range c.Drops {
		r, ok := reasonByName(name)
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		st.c.drops[r].Add(n)
	}
	return unknown, nil
}

func reasonByName(name string) (packet.Reason, bool) {
	for r := packet.Reason(0); r < packet.NumReasons; r++ {
		if r.String() == name {
			return r, true
		}
	}
	return 0, false
}
