package vswitch

import (
	"net"
	"net/netip"
)

// Config is the plain description of the network that the control plane
// hands to the switch. The switch compiles it into an immutable Snapshot with
// lookup indexes and publishes it atomically (see Switch.Apply). A Config is
// never modified after it is applied.
type Config struct {
	// Gen is a generation number chosen by the control plane; it only
	// labels the snapshot.
	Gen uint64
	// GatewayMAC is the MAC roam answers with for every subnet gateway and
	// every public address. Nil means DefaultGatewayMAC.
	GatewayMAC net.HardwareAddr
	// PublicIP is the gateway's own public address: records without a
	// public IP reach the outside through SNAT/PAT to it. Invalid means no
	// PAT (such records cannot reach the outside).
	PublicIP netip.Addr
	// PublicCIDR is the public pool; roam answers ARP on the uplink for
	// PublicIP and every associated public IP.
	PublicCIDR netip.Prefix
	// Uplink is the name of the port that leads to the outside ("" when
	// there is none).
	Uplink string
	// Upstream is the next hop for destinations outside PublicCIDR, resolved
	// with ARP. When neither it nor UpstreamMAC is set, such destinations
	// are unreachable (neighbor_unresolved): roam learns no router from the
	// frames it receives, which any host on the segment could forge.
	// Destinations inside PublicCIDR are on-link: roam resolves them with
	// ARP itself.
	Upstream netip.Addr
	// UpstreamMAC, when set, is the MAC every frame sent out of the uplink
	// is addressed to (no resolution at all).
	UpstreamMAC net.HardwareAddr

	Subnets []Subnet
	Groups  []Group
	Records []Record
	Routes  []Route
}

// Subnet is a private IPv4 CIDR. Its gateway is the first address after the
// network address (10.0.0.1 in 10.0.0.0/24), as in AWS VPC.
type Subnet struct {
	ID     string
	Prefix netip.Prefix
	MTU    int          // 0 means 1500
	DNS    []netip.Addr // offered by DHCP
}

// Gateway returns the subnet's gateway address.
func (s *Subnet) Gateway() netip.Addr { return s.Prefix.Masked().Addr().Next() }

// Group is a security group: stateful rules. An empty Egress list denies all
// egress; control creates groups with an allow-all egress rule, as AWS does.
type Group struct {
	ID      string
	Ingress []Rule
	Egress  []Rule
}

// Rule allows traffic. Proto is an IP protocol number (0 means all
// protocols). For TCP and UDP, FromPort..ToPort is the destination port
// range (0..0 means all ports); for ICMP, FromPort is the type and ToPort the
// code (0xffff means any). The peer is CIDR, or, when Group is set, every IP
// of every record in that group.
type Rule struct {
	Proto    uint8
	FromPort uint16
	ToPort   uint16
	CIDR     netip.Prefix
	Group    string
}

// Record is an interface record (ENI) as the data path sees it.
type Record struct {
	ID     string       // "eni-" + 8 hex digits
	Subnet string       // Subnet.ID
	IPs    []netip.Addr // primary first, then secondaries
	MAC    net.HardwareAddr
	Groups []string // Group.IDs; none behaves like a group with default rules
	// SourceDestCheck drops frames from the record whose source is not one
	// of its IPs and frames to it whose destination is not one of its IPs.
	SourceDestCheck bool
	// PublicIPs are the 1:1 associations of public addresses with the
	// record's private IPs.
	PublicIPs []Association
	// Ports are the names of the ports the record is attached to, one per
	// attachment. Traffic to the record is spread over them by flow hash,
	// each flow pinned to one. Empty means the record is not attached.
	Ports []string
	// FlowBudget is the most conntrack entries the record may hold (0 means
	// the switch's default).
	FlowBudget int
	// FlowPolicy is what happens to the record's tracked flows when a
	// snapshot changes its security groups (the list, or a group's rules)
	// or its public IPs: FlowKeep ("" too), FlowReevaluate or FlowReset.
	FlowPolicy string
}

// Flow policies (Record.FlowPolicy).
const (
	// FlowKeep keeps tracked flows as they are, as AWS does: return
	// traffic of a tracked flow stays allowed whatever the new rules.
	FlowKeep = "keep"
	// FlowReevaluate removes the flows the new rules (or public IPs)
	// would not admit; their later packets are judged as first packets
	// by the rules in force, and dropped.
	FlowReevaluate = "reevaluate"
	// FlowReset removes every flow of the record; TCP connections get a
	// RST at both ends.
	FlowReset = "reset"
)

// Association binds a public IP to one of a record's private IPs.
type Association struct {
	Public  netip.Addr
	Private netip.Addr
}

// Route sends a destination prefix to a record, as a VPC route table entry
// that targets an interface does; the record usually has SourceDestCheck off.
type Route struct {
	Prefix netip.Prefix
	Record string
}
