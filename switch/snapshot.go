package vswitch

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
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
	upstream  uint32 // next hop for off-link destinations (0: none)
	pubNet    uint32 // PublicCIDR, on-link on the uplink
	pubMask   uint32
	hasPubNet bool
	subnets   []subnetEntry
	// The record-sized indexes are sharded and copied on write
	// (shards.go), so delta copies only the shards it changes.
	ports     shardMap[*portState, *recEntry] // VM ports and the record attached to each
	private   shardMap[uint32, *recEntry]     // private IP -> record
	gateways  map[uint32]*subnetEntry         // gateway IP -> subnet
	public    shardMap[uint32, pubEntry]      // public IP -> association
	routes    []routeEntry                    // longest prefix first
	groups    map[string]*groupEntry
	groupList []*groupEntry // by groupEntry.idx, as rules refer to them
	records   shardMap[string, *recEntry]
	macs      shardMap[packet.MAC, string]
	draining  map[*portState]drain // ports a record left moments ago (drain.go)
	moved     []*portState         // ports of the records delta replaced
	gen       uint64               // distinguishes snapshots, for copy on write
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
	idx     int
	gen     uint64                     // the snapshot that owns (may write) this entry
	members shardMap[uint32, struct{}] // every IP of every record in the group
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
	groups  []string
	ingress []rule
	egress  []rule
	pubOf   []pubEntryPair // private -> public
	budget  int32
	idx     int // the record's index in Config.Records when compiled
	// cfg is the record as configured (for the flow policy). A copy, not
	// a pointer into Config.Records: entries that ApplyDelta shares
	// across snapshots would keep every old Records array alive.
	cfg Record
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
func compile(cfg *Config, ports func(string) *portState, state func(id string) *recordState, defaultBudget int32) (*Snapshot, error) {
	s := &Snapshot{
		cfg:       cfg,
		ports:     newShardMap[*portState, *recEntry](hashPort),
		private:   newShardMap[uint32, *recEntry](hashU32),
		gateways:  map[uint32]*subnetEntry{},
		public:    newShardMap[uint32, pubEntry](hashU32),
		groups:    map[string]*groupEntry{},
		records:   newShardMap[string, *recEntry](hashString),
		macs:      newShardMap[packet.MAC, string](hashMAC),
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
		p := ports(cfg.Uplink)
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
		ge := &groupEntry{id: g.ID, g: g, idx: len(s.groupList), gen: s.gen, members: newShardMap[uint32, struct{}](hashU32)}
		s.groups[g.ID] = ge
		s.groupList = append(s.groupList, ge)
	}
	for i := range cfg.Records {
		if err := s.addRecord(&cfg.Records[i], i, ports, state, defaultBudget); err != nil {
			return nil, err
		}
	}
	// Security group rules, resolved once every group's members are known.
	for i := range cfg.Records {
		if err := s.compileRecordRules(&cfg.Records[i]); err != nil {
			return nil, err
		}
	}
	if err := s.compileRoutes(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// recField names field of cfg.Records[i] for an error.
func recField(i int, field string, j ...int) string {
	f := fmt.Sprintf("records[%d].%s", i, field)
	if len(j) > 0 {
		f += fmt.Sprintf("[%d]", j[0])
	}
	return f
}

// addRecord validates record r (cfg.Records[i]) against what s holds and
// adds it to s's indexes. Its rules are compiled later (compileRecordRules).
func (s *Snapshot) addRecord(r *Record, i int, ports func(string) *portState, state func(id string) *recordState, defaultBudget int32) error {
	if r.ID == "" || s.records.at(r.ID) != nil {
		return cfgErr(recField(i, "id"), r.ID, "empty or duplicate")
	}
	sn := s.subnetByID(r.Subnet)
	if sn == nil {
		return cfgErr(recField(i, "subnet"), r.Subnet, "no such subnet")
	}
	if len(r.MAC) != 6 {
		return cfgErr(recField(i, "mac"), r.MAC, "want 6 bytes")
	}
	e := &recEntry{id: r.ID, idx: i, subnet: sn, mac: macOf(r.MAC), sdc: r.SourceDestCheck, cfg: *r}
	switch r.FlowPolicy {
	case "", FlowKeep, FlowReevaluate, FlowReset:
	default:
		return cfgErr(recField(i, "flow_policy"), r.FlowPolicy, "want %s, %s or %s", FlowKeep, FlowReevaluate, FlowReset)
	}
	if e.mac.IsMulticast() || e.mac == (packet.MAC{}) {
		return cfgErr(recField(i, "mac"), r.MAC, "not a unicast address")
	}
	if other, dup := s.macs.get(e.mac); dup {
		return cfgErr(recField(i, "mac"), r.MAC, "also used by %s", other)
	}
	if len(r.IPs) == 0 {
		return cfgErr(recField(i, "ips"), "", "a record needs a primary IP")
	}
	e.ips = make([]uint32, 0, len(r.IPs))
	for j, ip := range r.IPs {
		a := packet.AddrFrom(ip)
		if !ip.Is4() || !sn.contains(a) {
			return cfgErr(recField(i, "ips", j), ip, "not in subnet %s (%s)", sn.id, sn.prefix)
		}
		if a == sn.gateway || a == sn.net || a == sn.net|^sn.mask {
			return cfgErr(recField(i, "ips", j), ip, "reserved address of subnet %s", sn.id)
		}
		if o := s.private.at(a); o != nil {
			return cfgErr(recField(i, "ips", j), ip, "already held by %s", o.id)
		}
		if e.hasIP(a) {
			return cfgErr(recField(i, "ips", j), ip, "listed twice")
		}
		e.ips = append(e.ips, a)
	}
	for j, name := range r.Ports {
		p := ports(name)
		if p == nil {
			return cfgErr(recField(i, "ports", j), name, "no such port")
		}
		if o := s.ports.at(p); o != nil {
			return cfgErr(recField(i, "ports", j), name, "already attached to %s", o.id)
		}
		if p == s.uplink {
			return cfgErr(recField(i, "ports", j), name, "is the uplink")
		}
		for _, q := range e.ports {
			if q == p {
				return cfgErr(recField(i, "ports", j), name, "listed twice")
			}
		}
		e.ports = append(e.ports, p)
	}
	for j, g := range r.Groups {
		if s.groups[g] == nil {
			return cfgErr(recField(i, "groups", j), g, "no such security group")
		}
	}
	for j, as := range r.PublicIPs {
		pub, priv := packet.AddrFrom(as.Public), packet.AddrFrom(as.Private)
		if !as.Public.Is4() || pub == 0 {
			return cfgErr(recField(i, "public_ips", j)+".public", as.Public, "want an IPv4 address")
		}
		if !e.hasIP(priv) {
			return cfgErr(recField(i, "public_ips", j)+".private", as.Private, "not an IP of %s", r.ID)
		}
		if pub == s.publicIP {
			return cfgErr(recField(i, "public_ips", j)+".public", as.Public, "is the gateway's public IP")
		}
		if o, dup := s.public.get(pub); dup {
			return cfgErr(recField(i, "public_ips", j)+".public", as.Public, "already associated with %s", o.rec.id)
		}
		if _, dup := e.publicFor(priv); dup {
			return cfgErr(recField(i, "public_ips", j)+".private", as.Private, "already has a public IP")
		}
		e.pubOf = append(e.pubOf, pubEntryPair{priv, pub})
	}
	// Valid: index it.
	s.macs.set(e.mac, r.ID, s.gen)
	for _, a := range e.ips {
		s.private.set(a, e, s.gen)
	}
	for _, p := range e.ports {
		s.ports.set(p, e, s.gen)
	}
	for _, pp := range e.pubOf {
		s.public.set(pp.public, pubEntry{rec: e, private: pp.private}, s.gen)
	}
	for _, g := range r.Groups {
		ge := s.ownGroup(g)
		for _, a := range e.ips {
			ge.members.set(a, struct{}{}, ge.gen)
		}
	}
	e.groups = r.Groups
	e.st = state(r.ID)
	e.slot = e.st.slot
	e.budget = defaultBudget
	if r.FlowBudget > 0 {
		e.budget = int32(r.FlowBudget)
	}
	s.records.set(r.ID, e, s.gen)
	return nil
}

// removeRecord takes record e out of s's indexes (delta).
func (s *Snapshot) removeRecord(e *recEntry) {
	s.records.del(e.id, s.gen)
	s.macs.del(e.mac, s.gen)
	for _, a := range e.ips {
		if s.private.at(a) == e {
			s.private.del(a, s.gen)
		}
	}
	for _, p := range e.ports {
		if s.ports.at(p) == e {
			s.ports.del(p, s.gen)
		}
	}
	for _, pp := range e.pubOf {
		if s.public.at(pp.public).rec == e {
			s.public.del(pp.public, s.gen)
		}
	}
	for _, g := range e.groups {
		if s.groups[g] == nil {
			continue
		}
		ge := s.ownGroup(g)
		for _, a := range e.ips {
			ge.members.del(a, ge.gen)
		}
	}
}

// ownGroup returns s's entry for group id, copying it first if it is
// shared with the snapshot s was cloned from (copy on write).
func (s *Snapshot) ownGroup(id string) *groupEntry {
	ge := s.groups[id]
	if ge.gen == s.gen {
		return ge
	}
	ng := &groupEntry{id: ge.id, g: ge.g, idx: ge.idx, gen: s.gen, members: ge.members}
	s.groups[id] = ng
	s.groupList[ng.idx] = ng
	return ng
}

func (s *Snapshot) subnetByID(id string) *subnetEntry {
	for i := range s.subnets {
		if s.subnets[i].id == id {
			return &s.subnets[i]
		}
	}
	return nil
}

// compileRecordRules resolves the security group rules of record r.
func (s *Snapshot) compileRecordRules(r *Record) error {
	e := s.records.at(r.ID)
	e.ingress, e.egress = nil, nil
	if len(r.Groups) == 0 {
		e.egress = allowAll
		return nil
	}
	for _, g := range r.Groups {
		ge := s.groups[g]
		in, err := compileRules(ge.g.Ingress, s.groups, "groups["+g+"].ingress")
		if err != nil {
			return err
		}
		out, err := compileRules(ge.g.Egress, s.groups, "groups["+g+"].egress")
		if err != nil {
			return err
		}
		e.ingress = append(e.ingress, in...)
		e.egress = append(e.egress, out...)
	}
	return nil
}

func (s *Snapshot) compileRoutes(cfg *Config) error {
	s.routes = nil
	for i, rt := range cfg.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		if !rt.Prefix.IsValid() || !rt.Prefix.Addr().Is4() {
			return cfgErr(f+".prefix", rt.Prefix, "want an IPv4 prefix")
		}
		e := s.records.at(rt.Record)
		if e == nil {
			return cfgErr(f+".record", rt.Record, "no such record")
		}
		p := rt.Prefix.Masked()
		s.routes = append(s.routes, routeEntry{net: packet.AddrFrom(p.Addr()), mask: maskOf(p.Bits()), bits: p.Bits(), rec: e})
	}
	sort.SliceStable(s.routes, func(i, j int) bool { return s.routes[i].bits > s.routes[j].bits })
	return nil
}

// delta builds the snapshot of cfg from s when cfg differs from s's config
// only in the records named by changed: the other records' entries are
// shared, and so are the shards of the indexes (shards.go) that the
// changed records do not touch. Its cost is that of the changed records,
// each cloning the few shards it touches (about len/256 entries each),
// plus the routes and groups (one entry each); a record removed, added
// away from the end of Config.Records or moved in it also costs a scan of
// Config.Records. It does not compile or copy the other records.
func (s *Snapshot) delta(cfg *Config, changed []string, ports func(string) *portState, state func(id string) *recordState, defaultBudget int32, gen uint64) (*Snapshot, error) {
	ns := *s
	ns.moved = nil
	ns.cfg = cfg
	ns.gen = gen
	// The sharded indexes came with the copy of *s; writes clone only
	// the shards they touch (shards.go). groups is one entry per group.
	ns.groups = maps.Clone(s.groups)
	ns.groupList = slices.Clone(s.groupList)
	want := make(map[string]int, len(changed))
	unresolved := 0
	for _, id := range changed {
		want[id] = -1
		if e := ns.records.at(id); e != nil {
			// The record most often keeps its place in Config.Records:
			// look there first, and scan the list only for those that
			// moved, were added or were removed.
			if e.idx < len(cfg.Records) && cfg.Records[e.idx].ID == id {
				want[id] = e.idx
			}
			ns.moved = append(ns.moved, e.ports...)
			ns.removeRecord(e)
		}
		if want[id] < 0 {
			unresolved++
		}
	}
	for i := len(cfg.Records) - 1; i >= 0 && unresolved > 0; i-- { // added records are usually last
		if j, ok := want[cfg.Records[i].ID]; ok && j < 0 {
			want[cfg.Records[i].ID] = i
			unresolved--
		}
	}
	for _, id := range changed {
		if i := want[id]; i >= 0 {
			if err := ns.addRecord(&cfg.Records[i], i, ports, state, defaultBudget); err != nil {
				return nil, err
			}
		}
	}
	for _, id := range changed {
		if i := want[id]; i >= 0 {
			if err := ns.compileRecordRules(&cfg.Records[i]); err != nil {
				return nil, err
			}
		}
	}
	if err := ns.compileRoutes(cfg); err != nil {
		return nil, err
	}
	return &ns, nil
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
	for a := range s.public.all() {
		out = append(out, a)
	}
	return out
}

// isPublic reports whether a is one of the gateway's public addresses.
func (s *Snapshot) isPublic(a uint32) bool {
	if a == s.publicIP && a != 0 {
		return true
	}
	_, ok := s.public.get(a)
	return ok
}
