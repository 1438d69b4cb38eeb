package vswitch

import (
	"testing"

	"roam/internal/packet"
	"roam/nat"
)

// TestReasonNames: every reason of the three packages that drop has the
// name counters, metrics, roamctl stats and counters.snap have always shown.
func TestReasonNames(t *testing.T) {
	want := map[packet.Reason]string{
		packet.ReasonNone: "none", packet.ReasonRunt: "runt", packet.ReasonBadEtherType: "bad_ethertype",
		packet.ReasonIPv6: "ipv6", packet.ReasonVLAN: "vlan_tagged", packet.ReasonBadIPHeader: "bad_ip_header",
		packet.ReasonBadIPChecksum: "bad_ip_checksum", packet.ReasonBadL4Header: "bad_l4_header", packet.ReasonBadARP: "bad_arp",

		nat.ReasonUnsupportedL4: "unsupported_l4", nat.ReasonUnsolicited: "unsolicited", nat.ReasonTableFull: "table_full",
		nat.ReasonBudget: "flow_budget", nat.ReasonNoPort4NAT: "nat_ports_exhausted", nat.ReasonInvalidState: "invalid_state",
		nat.ReasonNoPublicIP: "no_public_ip", nat.ReasonNATConflict: "nat_conflict", nat.ReasonFragNoFlow: "frag_no_flow",
		nat.ReasonFragLimit: "frag_limit", nat.ReasonFragOverlap: "frag_overlap",

		ReasonBadChecksum: "bad_checksum", ReasonNoPort: "no_port", ReasonNoRecord: "no_record",
		ReasonSourceCheck: "source_check", ReasonDestCheck: "dest_check", ReasonNoRoute: "no_route",
		ReasonNoAttachment: "no_attachment", ReasonSGEgress: "sg_egress", ReasonSGIngress: "sg_ingress",
		ReasonTTL: "ttl_expired", ReasonFragNeeded: "frag_needed", ReasonARPIgnored: "arp_ignored",
		ReasonNotForUs: "not_for_us", ReasonPortDown: "port_down", ReasonICMPNoFlow: "icmp_no_flow",
		ReasonNoNeighbor: "neighbor_unresolved", ReasonDHCPRate: "dhcp_rate_limited", ReasonARPUnasked: "arp_unsolicited",
	}
	seen := map[string]packet.Reason{}
	for r := packet.Reason(0); r < packet.NumReasons; r++ {
		s := r.String()
		if s == "unknown" {
			if _, ok := want[r]; ok {
				t.Errorf("reason %d: unnamed, want %q", r, want[r])
			}
			continue
		}
		if w, ok := want[r]; !ok {
			t.Errorf("reason %d: named %q but not in this test: add it", r, s)
		} else if s != w {
			t.Errorf("reason %d: got name %q, want %q", r, s, w)
		}
		if o, dup := seen[s]; dup {
			t.Errorf("reasons %d and %d: both named %q", o, r, s)
		}
		seen[s] = r
	}
	if len(seen) != len(want) {
		t.Errorf("got %d named reasons, want %d", len(seen), len(want))
	}
}
