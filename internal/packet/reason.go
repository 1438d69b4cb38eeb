package packet

// Reason is why the data path dropped a frame or what it did with it. The
// data path keeps counters as arrays indexed by Reason, so counting costs no
// allocation and no map.
type Reason uint8

// Reasons. ReasonNone means "not dropped".
const (
	ReasonNone Reason = iota
	// Parse failures.
	ReasonRunt          // shorter than its headers say
	ReasonBadEtherType  // not IPv4, ARP or 802.1Q
	ReasonIPv6          // IPv6 is recognised and dropped for now
	ReasonVLAN          // 802.1Q or QinQ tagged: roam's ports are untagged
	ReasonBadIPHeader   // version, IHL or total length wrong
	ReasonBadIPChecksum // IPv4 header checksum does not verify
	ReasonBadL4Header   // TCP data offset, UDP length, ICMP length wrong
	ReasonBadARP        // not Ethernet/IPv4 ARP
	ReasonBadChecksum   // an L4 or embedded checksum that must verify does not (RFC 5508)
	ReasonUnsupportedL4 // an IP protocol the NAT cannot track
	// Switch decisions.
	ReasonNoPort       // the frame came from a port roam does not know
	ReasonNoRecord     // the port has no record attached
	ReasonSourceCheck  // source/dest check: source is not the record's
	ReasonDestCheck    // source/dest check: destination is not the record's
	ReasonNoRoute      // destination belongs to no record and no route
	ReasonNoAttachment // the destination record is not attached
	ReasonSGEgress     // egress security group rules deny
	ReasonSGIngress    // ingress security group rules deny
	ReasonTTL          // TTL expired
	ReasonFragNeeded   // DF set and larger than the next hop's MTU
	ReasonMartian      // source or destination address not allowed here
	ReasonARPIgnored   // an ARP roam does not answer (not for its addresses)
	ReasonNotForUs     // a frame to an address roam neither owns nor routes
	ReasonPortDown     // the destination port is not operational or its queue is full
	ReasonLocal        // a frame roam consumed itself (DHCP, ARP, ICMP to the gateway)
	ReasonUnsolicited  // inbound with no mapping (PAT filtering)
	ReasonTableFull    // conntrack is at its global limit: new flow refused
	ReasonBudget       // the record is at its conntrack budget: new flow refused
	ReasonNoPort4NAT   // no free PAT port for a new flow
	ReasonInvalidState // TCP packet invalid for the flow's state (e.g. RST out of window)
	ReasonFragNoFlow   // a non-first fragment whose first fragment was never seen
	ReasonFragLimit    // fragment tracking is at its limit
	ReasonICMPNoFlow   // an ICMP error for no tracked flow
	ReasonNoPublicIP   // the record has no way out (no public IP and no PAT address)
	ReasonNATConflict  // the translated tuple is already taken by another flow
	ReasonNoNeighbor   // the uplink next hop's MAC is not resolved yet (an ARP request went out)
	ReasonDHCPRate     // a port sent more DHCP messages than its rate allows
	ReasonFragOverlap  // a later fragment overlaps its datagram's first fragment
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonNone:          "none",
	ReasonRunt:          "runt",
	ReasonBadEtherType:  "bad_ethertype",
	ReasonIPv6:          "ipv6",
	ReasonVLAN:          "vlan_tagged",
	ReasonBadIPHeader:   "bad_ip_header",
	ReasonBadIPChecksum: "bad_ip_checksum",
	ReasonBadL4Header:   "bad_l4_header",
	ReasonBadARP:        "bad_arp",
	ReasonBadChecksum:   "bad_checksum",
	ReasonUnsupportedL4: "unsupported_l4",
	ReasonNoPort:        "no_port",
	ReasonNoRecord:      "no_record",
	ReasonSourceCheck:   "source_check",
	ReasonDestCheck:     "dest_check",
	ReasonNoRoute:       "no_route",
	ReasonNoAttachment:  "no_attachment",
	ReasonSGEgress:      "sg_egress",
	ReasonSGIngress:     "sg_ingress",
	ReasonTTL:           "ttl_expired",
	ReasonFragNeeded:    "frag_needed",
	ReasonMartian:       "martian",
	ReasonARPIgnored:    "arp_ignored",
	ReasonNotForUs:      "not_for_us",
	ReasonPortDown:      "port_down",
	ReasonLocal:         "local",
	ReasonUnsolicited:   "unsolicited",
	ReasonTableFull:     "table_full",
	ReasonBudget:        "flow_budget",
	ReasonNoPort4NAT:    "nat_ports_exhausted",
	ReasonInvalidState:  "invalid_state",
	ReasonFragNoFlow:    "frag_no_flow",
	ReasonFragLimit:     "frag_limit",
	ReasonICMPNoFlow:    "icmp_no_flow",
	ReasonNoPublicIP:    "no_public_ip",
	ReasonNATConflict:   "nat_conflict",
	ReasonNoNeighbor:    "neighbor_unresolved",
	ReasonDHCPRate:      "dhcp_rate_limited",
	ReasonFragOverlap:   "frag_overlap",
}

// String returns the reason's snake_case name, as counters and metrics show it.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}
