package vswitch

import "roam/internal/packet"

// Reasons the switch drops for (see packet.Reason: each package that drops
// owns its reasons, in its own range; the names are what counters, metrics
// and roamctl stats print, and never change).
const (
	ReasonBadChecksum  = packet.FirstSwitchReason + iota // an L4 or embedded checksum that must verify does not (RFC 5508)
	ReasonNoPort                                         // the frame came from a port roam does not know
	ReasonNoRecord                                       // the port has no record attached
	ReasonSourceCheck                                    // source/dest check: source is not the record's
	ReasonDestCheck                                      // source/dest check: destination is not the record's
	ReasonNoRoute                                        // destination belongs to no record and no route
	ReasonNoAttachment                                   // the destination record is not attached
	ReasonSGEgress                                       // egress security group rules deny
	ReasonSGIngress                                      // ingress security group rules deny
	ReasonTTL                                            // TTL expired
	ReasonFragNeeded                                     // DF set and larger than the next hop's MTU
	ReasonARPIgnored                                     // an ARP roam does not answer (not for its addresses)
	ReasonNotForUs                                       // a frame to an address roam neither owns nor routes
	ReasonPortDown                                       // the destination port is not operational or its queue is full
	ReasonICMPNoFlow                                     // an ICMP error for no tracked flow
	ReasonNoNeighbor                                     // the uplink next hop's MAC is not resolved yet (an ARP request went out)
	ReasonDHCPRate                                       // a port sent more DHCP messages than its rate allows
	ReasonARPUnasked                                     // an uplink ARP the neighbour table refused (uplink.go): it answers no request of roam's, or is a gratuitous ARP it may not apply
	numReasons
)

func init() {
	packet.RegisterReasons(packet.FirstSwitchReason, int(numReasons-packet.FirstSwitchReason),
		"bad_checksum",
		"no_port",
		"no_record",
		"source_check",
		"dest_check",
		"no_route",
		"no_attachment",
		"sg_egress",
		"sg_ingress",
		"ttl_expired",
		"frag_needed",
		"arp_ignored",
		"not_for_us",
		"port_down",
		"icmp_no_flow",
		"neighbor_unresolved",
		"dhcp_rate_limited",
		"arp_unsolicited",
	)
}
