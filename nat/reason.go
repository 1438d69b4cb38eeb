package nat

import "roam/internal/packet"

// Reasons the NAT and conntrack drop for (see packet.Reason: each package
// that drops owns its reasons, in its own range; the names are what counters,
// metrics and roamctl stats print, and never change).
const (
	ReasonUnsupportedL4 = packet.FirstNATReason + iota // an IP protocol the NAT cannot track
	ReasonUnsolicited                                  // inbound with no mapping (PAT filtering)
	ReasonTableFull                                    // conntrack is at its global limit: new flow refused
	ReasonBudget                                       // the record is at its conntrack budget: new flow refused
	ReasonNoPort4NAT                                   // no free PAT port for a new flow
	ReasonInvalidState                                 // TCP packet invalid for the flow's state (e.g. RST out of window)
	ReasonNoPublicIP                                   // the record has no way out (no public IP and no PAT address)
	ReasonNATConflict                                  // the translated tuple is already taken by another flow
	ReasonFragNoFlow                                   // a non-first fragment whose first fragment was never seen
	ReasonFragLimit                                    // fragment tracking is at its limit
	ReasonFragOverlap                                  // a later fragment overlaps its datagram's first fragment
	numReasons
)

func init() {
	packet.RegisterReasons(packet.FirstNATReason, int(numReasons-packet.FirstNATReason),
		"unsupported_l4",
		"unsolicited",
		"table_full",
		"flow_budget",
		"nat_ports_exhausted",
		"invalid_state",
		"no_public_ip",
		"nat_conflict",
		"frag_no_flow",
		"frag_limit",
		"frag_overlap",
	)
}
