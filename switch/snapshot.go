package vswitch

import (
	"fmt"
	"net"
	"net/netip"
	"sort"

	"roam/internal/packet"
)

// DefaultGatewayMAC is the MAC roam answers with when Config.GatewayMAC is
// not set (locally administered).
var DefaultGatewayMAC = net.HardwareAddr{0x02, 0x52, 0x4f, 0x41, 0x4d, 0x01}

// Snapshot is a compiled, immutable Config: the indexes the data path
// reads. The hot path loads one Snapshot per batch (Switch.snap) and never
// sees a half-applied change.
type Snapshot struct {
	cfg       *Config
	gwMAC     packet.MAC
	publicIP  uint32
	uplink    *portState
	upMAC     packet.MAC
	upMACSet  bool
	upstream  uint32 // next hop for off-link destinations (0: learned router)
	pubNet    uint32 // PublicCIDR, on-link on the uplink
	pubMask   uint32
	hasPubNet bool
	subnets   []subnetEntry
	ports     map[*portState]*recEntry // VM ports and the record attached to each
	private   map[uint32]*recEntry     // private IP -> record
	gateways  map[uint32]*subnetEntry  // gateway IP -> subnet
	public    map[uint32]pubEntry      // public IP -> association
	routes    []routeEntry             // longest prefix first
	groups    map[string]*groupEntry
	records   map[string]*recEntry
	uplinkMTU int
}

type subnetEntry struct {
	id      string
	prefix  netip.Prefix
	net     uint32
	mask    uint32
	gateway uint32
	mtu     int
	dns     []netip.Addr
}

func (s *subnetEntry) contains(a uint32) bool { return a&s.mask == s.net }

type pubEntry struct {
	rec     *recEntry
	private uint32
}

type routeEntry struct {
	net, mask uint32
	bits      int
	rec       *recEntry
}

type groupEntry struct {
	id      string
	members map[uint32]struct{} // every IP of every record in the group
	g       *Group
}

type recEntry struct {
	id      string
	slot    uint32
	st      *recordState
	mac     packet.MAC
	ips     []uint32
	sdc     bool
	subnet  *subnetEntry
	ports   []*portState
	ingress []rule
	egress  []rule
	pubOf   []pubEntryPair // private -> public
	budget  int32
}

type pubEntryPair struct{ private, public uint32 }

func (r *recEntry) hasIP(a uint32) bool {
	for _, x := range r.ips {
		if x == a {
			return true
		}
	}
	return false
}

// publicFor returns the 1:1 public address of private address a.
func (r *recEntry) publicFor(a uint32) (uint32, bool) {
	for _, p := range r.pubOf {
		if p.private == a {
			return p.public, true
		}
	}
	return 0, false
}

// ConfigError is returned by Apply for an invalid Config; Field names the
// offending field (e.g. "records[2].ips[0]").
type ConfigError struct {
	Field string
	Value string
	Msg   string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid config: %s %q: %s", e.Field, e.Value, e.Msg)
}

func cfgErr(field string, value any, format string, args ...any) error {
	return &ConfigError{Field: field, Value: fmt.Sprint(value), Msg: fmt.Sprintf(format, args...)}
}

func macOf(hw net.HardwareAddr) packet.MAC {
	var m packet.MAC
	copy(m[:], hw)
	return m
}

// compile validates cfg and builds its snapshot. ports resolves port names;
// state returns the persistent per-record state (counters, owner slot).
func compile(cfg *Config, ports map[string]*portState, state func(id string) *recordState, defaultBudget int32) (*Snapshot, error) {
	s := &Snapshot{
		cfg:       cfg,
		ports:     map[*portState]*recEntry{},
		private:   map[uint32]*recEntry{},
		gateways:  map[uint32]*subnetEntry{},
		public:    map[uint32]pubEntry{},
		groups:    map[string]*groupEntry{},
		records:   map[string]*recEntry{},
		uplinkMTU: 1500,
	}
	if len(cfg.GatewayMAC) == 0 {
		s.gwMAC = macOf(DefaultGatewayMAC)
	} else if len(cfg.GatewayMAC) != 6 {
		return nil, cfgErr("gateway_mac", cfg.GatewayMAC, "want 6 bytes")
	} else {
		s.gwMAC = macOf(cfg.GatewayMAC)
	}
	if cfg.PublicIP.IsValid() {
		if !cfg.PublicIP.Is4() {
			return nil, cfgErr("public_ip", cfg.PublicIP, "want an IPv4 address")
		}
		s.publicIP = packet.AddrFrom(cfg.PublicIP)
	}
	if cfg.Upstream.IsValid() {
		if !cfg.Upstream.Is4() {
			return nil, cfgErr("upstream", cfg.Upstream, "want an IPv4 address")
		}
		s.upstream = packet.AddrFrom(cfg.Upstream)
	}
	if cfg.PublicCIDR.IsValid() {
		if !cfg.PublicCIDR.Addr().Is4() {
			return nil, cfgErr("public_cidr", cfg.PublicCIDR, "want an IPv4 prefix")
		}
		p := cfg.PublicCIDR.Masked()
		s.pubNet, s.pubMask, s.hasPubNet = packet.AddrFrom(p.Addr()), maskOf(p.Bits()), true
	}
	if len(cfg.UpstreamMAC) == 6 {
		s.upMAC, s.upMACSet = macOf(cfg.UpstreamMAC), true
	} else {
		s.upMAC = packet.Broadcast
	}
	if cfg.Uplink != "" {
		p := ports[cfg.Uplink]
		if p == nil {
			return nil, cfgErr("uplink", cfg.Uplink, "no such port")
		}
		s.uplink = p
	}
	subnets := map[string]*subnetEntry{}
	s.subnets = make([]subnetEntry, len(cfg.Subnets))
	for i := range cfg.Subnets {
		sn := &cfg.Subnets[i]
		f := fmt.Sprintf("subnets[%d]", i)
		if !sn.Prefix.IsValid() || !sn.Prefix.Addr().Is4() || sn.Prefix.Bits() > 30 {
			return nil, cfgErr(f+".prefix", sn.Prefix, "want an IPv4 prefix of /30 or larger")
		}
		if _, dup := subnets[sn.ID]; dup || sn.ID == "" {
			return nil, cfgErr(f+".id", sn.ID, "empty or duplicate")
		}
		e := &s.subnets[i]
		p := sn.Prefix.Masked()
		e.id, e.prefix = sn.ID, p
		e.net = packet.AddrFrom(p.Addr())
		e.mask = ^uint32(0) << (32 - p.Bits())
		e.gateway = packet.AddrFrom(sn.Gateway())
		e.mtu = sn.MTU
		if e.mtu == 0 {
			e.mtu = 1500
		}
		e.dns = sn.DNS
		for j := range s.subnets[:i] {
			if o := &s.subnets[j]; o.prefix.Overlaps(p) {
				return nil, cfgErr(f+".prefix", sn.Prefix, "overlaps subnet %s (%s)", o.id, o.prefix)
			}
		}
		subnets[sn.ID] = e
		s.gateways[e.gateway] = e
	}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		if _, dup := s.groups[g.ID]; dup || g.ID == "" {
			return nil, cfgErr(fmt.Sprintf("groups[%d].id", i), g.ID, "empty or duplicate")
		}
		s.groups[g.ID] = &groupEntry{id: g.ID, g: g, members: map[uint32]struct{}{}}
	}
	macs := map[packet.MAC]string{}
	for i := range cfg.Records {
		r := &cfg.Records[i]
		f := fmt.Sprintf("records[%d]", i)
		if r.ID == "" || s.records[r.ID] != nil {
			return nil, cfgErr(f+".id", r.ID, "empty or duplicate")
		}
		sn := subnets[r.Subnet]
		if sn == nil {
			return nil, cfgErr(f+".subnet", r.Subnet, "no such subnet")
		}
		if len(r.MAC) != 6 {
			return nil, cfgErr(f+".mac", r.MAC, "want 6 bytes")
		}
		e := &recEntry{id: r.ID, subnet: sn, mac: macOf(r.MAC), sdc: r.SourceDestCheck}
		if e.mac.IsMulticast() || e.mac == (packet.MAC{}) {
			return nil, cfgErr(f+".mac", r.MAC, "not a unicast address")
		}
		if other, dup := macs[e.mac]; dup {
			return nil, cfgErr(f+".mac", r.MAC, "also used by %s", other)
		}
		macs[e.mac] = r.ID
		if len(r.IPs) == 0 {
			return nil, cfgErr(f+".ips", "", "a record needs a primary IP")
		}
		for j, ip := range r.IPs {
			a := packet.AddrFrom(ip)
			ff := fmt.Sprintf("%s.ips[%d]", f, j)
			if !ip.Is4() || !sn.contains(a) {
				return nil, cfgErr(ff, ip, "not in subnet %s (%s)", sn.id, sn.prefix)
			}
			if a == sn.gateway || a == sn.net || a == sn.net|^sn.mask {
				return nil, cfgErr(ff, ip, "reserved address of subnet %s", sn.id)
			}
			if o := s.private[a]; o != nil {
				return nil, cfgErr(ff, ip, "already held by %s", o.id)
			}
			s.private[a] = e
			e.ips = append(e.ips, a)
		}
		for j, name := range r.Ports {
			p := ports[name]
			if p == nil {
				return nil, cfgErr(fmt.Sprintf("%s.ports[%d]", f, j), name, "no such port")
			}
			if o := s.ports[p]; o != nil {
				return nil, cfgErr(fmt.Sprintf("%s.ports[%d]", f, j), name, "already attached to %s", o.id)
			}
			if p == s.uplink {
				return nil, cfgErr(fmt.Sprintf("%s.ports[%d]", f, j), name, "is the uplink")
			}
			s.ports[p] = e
			e.ports = append(e.ports, p)
		}
		for j, g := range r.Groups {
			ge := s.groups[g]
			if ge == nil {
				return nil, cfgErr(fmt.Sprintf("%s.groups[%d]", f, j), g, "no such security group")
			}
			for _, a := range e.ips {
				ge.members[a] = struct{}{}
			}
		}
		for j, as := range r.PublicIPs {
			ff := fmt.Sprintf("%s.public_ips[%d]", f, j)
			pub, priv := packet.AddrFrom(as.Public), packet.AddrFrom(as.Private)
			if !as.Public.Is4() || pub == 0 {
				return nil, cfgErr(ff+".public", as.Public, "want an IPv4 address")
			}
			if !e.hasIP(priv) {
				return nil, cfgErr(ff+".private", as.Private, "not an IP of %s", r.ID)
			}
			if pub == s.publicIP {
				return nil, cfgErr(ff+".public", as.Public, "is the gateway's public IP")
			}
			if o, dup := s.public[pub]; dup {
				return nil, cfgErr(ff+".public", as.Public, "already associated with %s", o.rec.id)
			}
			if _, dup := e.publicFor(priv); dup {
				return nil, cfgErr(ff+".private", as.Private, "already has a public IP")
			}
			s.public[pub] = pubEntry{rec: e, private: priv}
			e.pubOf = append(e.pubOf, pubEntryPair{priv, pub})
		}
		e.st = state(r.ID)
		e.slot = e.st.slot
		e.budget = defaultBudget
		if r.FlowBudget > 0 {
			e.budget = int32(r.FlowBudget)
		}
		s.records[r.ID] = e
	}
	// Security group rules, resolved once every group's members are known.
	for i := range cfg.Records {
		r := &cfg.Records[i]
		e := s.records[r.ID]
		if len(r.Groups) == 0 {
			e.egress = allowAll
			continue
		}
		for _, g := range r.Groups {
			ge := s.groups[g]
			in, err := compileRules(ge.g.Ingress, s.groups, fmt.Sprintf("groups[%s].ingress", g))
			if err != nil {
				return nil, err
			}
			out, err := compileRules(ge.g.Egress, s.groups, fmt.Sprintf("groups[%s].egress", g))
			if err != nil {
				return nil, err
			}
			e.ingress = append(e.ingress, in...)
			e.egress = append(e.egress, out...)
		}
	}
	for i, rt := range cfg.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		if !rt.Prefix.IsValid() || !rt.Prefix.Addr().Is4() {
			return nil, cfgErr(f+".prefix", rt.Prefix, "want an IPv4 prefix")
		}
		e := s.records[rt.Record]
		if e == nil {
			return nil, cfgErr(f+".record", rt.Record, "no such record")
		}
		p := rt.Prefix.Masked()
		s.routes = append(s.routes, routeEntry{net: packet.AddrFrom(p.Addr()), mask: maskOf(p.Bits()), bits: p.Bits(), rec: e})
	}
	sort.SliceStable(s.routes, func(i, j int) bool { return s.routes[i].bits > s.routes[j].bits })
	return s, nil
}

func maskOf(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

// subnetOf returns the subnet containing a, or nil.
func (s *Snapshot) subnetOf(a uint32) *subnetEntry {
	for i := range s.subnets {
		if s.subnets[i].contains(a) {
			return &s.subnets[i]
		}
	}
	return nil
}

// route returns the record a route sends a to, or nil.
func (s *Snapshot) route(a uint32) *recEntry {
	for i := range s.routes {
		if a&s.routes[i].mask == s.routes[i].net {
			return s.routes[i].rec
		}
	}
	return nil
}

// onLink reports whether a is on the uplink's own network.
func (s *Snapshot) onLink(a uint32) bool { return s.hasPubNet && a&s.pubMask == s.pubNet }

// publicAddrs returns every public address roam answers for.
func (s *Snapshot) publicAddrs() []uint32 {
	var out []uint32
	if s.publicIP != 0 {
		out = append(out, s.publicIP)
	}
	for a := range s.public {
		out = append(out, a)
	}
	return out
}

// isPublic reports whether a is one of the gateway's public addresses.
func (s *Snapshot) isPublic(a uint32) bool {
	if a == s.publicIP && a != 0 {
		return true
	}
	_, ok := s.public[a]
	return ok
}
