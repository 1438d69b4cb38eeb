package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	vswitch "roam/switch"
	"roam/tap"
)

// DataPath is where control publishes its snapshots and registers ports.
// *vswitch.Switch satisfies it.
type DataPath interface {
	Apply(cfg *vswitch.Config) error
	AddPort(p tap.Port) error
	RemovePort(name string) error
}

// reopenAdder is an optional interface of a DataPath that reopens a port
// whose device disappeared (vswitch.Switch.AddPortReopen).
type reopenAdder interface {
	AddPortReopen(p tap.Port, reopen func() (tap.Port, error)) error
}

// DeltaApplier is an optional fast path of a DataPath: ApplyDelta publishes
// cfg, which differs from the config in force only in the records named by
// changed (modified, added or removed; subnets, groups and the gateway are
// unchanged), so that the data path may rebuild only those records. A
// reassign then costs O(1) in flows; in records, the switch copies only the
// index shards the changed records touch (BenchmarkApplyDelta: about 20 µs
// at 10K records, 100 µs at 100K), and control copies the Records slice
// once (a memory copy, see state.recs). control uses it whenever the data
// path implements it.
type DeltaApplier interface {
	ApplyDelta(cfg *vswitch.Config, changed []string) error
}

// PortFactory opens the port that a spec names (tap:, netdev:, stream:, and
// tun: for the uplink). The daemon opens the real drivers, or in-memory
// tap/memport ports with --ports memory, behind the same interface.
type PortFactory interface {
	Open(spec string) (tap.Port, error)
}

// PortFactoryFunc adapts a function to PortFactory.
type PortFactoryFunc func(spec string) (tap.Port, error)

// Open implements PortFactory.
func (f PortFactoryFunc) Open(spec string) (tap.Port, error) { return f(spec) }

// Gateway is the public side of roam, from the daemon's flags.
type Gateway struct {
	PublicCIDR  netip.Prefix     // the pool EIPs are allocated from
	PublicIP    netip.Addr       // the gateway's own address (PAT), never allocated
	Uplink      string           // uplink port spec, "" for none
	Upstream    netip.Addr       // next hop for destinations outside the pool; invalid to learn it
	UpstreamMAC net.HardwareAddr // when set, every frame out of the uplink goes to this MAC
	GatewayMAC  net.HardwareAddr // nil means the switch's default
}

// Options configure a Service.
type Options struct {
	Store    Store
	DataPath DataPath
	Ports    PortFactory
	Gateway  Gateway
	Logger   *slog.Logger
	Now      func() time.Time // nil means time.Now
	Rand     io.Reader        // nil means crypto/rand
	// Observe, when set, is called after every mutating operation with its
	// name, result ("ok" or an error code) and duration (metrics).
	Observe func(op, result string, d time.Duration)
}

// Principal is the caller of an operation, identified by uid. Uid 0 is the
// administrator; so is a caller with Admin set (the daemon sets it for the
// uid that started it, see internal/apiserver.Admins).
type Principal struct {
	UID   uint32
	Admin bool
}

// Root is the administrator.
var Root = Principal{UID: 0}

// IsRoot reports whether p is an administrator: uid 0 or Admin.
func (p Principal) IsRoot() bool { return p.UID == 0 || p.Admin }

// Service is the network interface virtualization service: it owns the
// records and every other object, validates and authorizes each operation,
// persists it in one store transaction and publishes one new data path
// snapshot built from the whole state.
//
// Lock order: Service.mu, then the store's own locks. Every mutating
// operation holds mu for writing from validation to publication, so
// operations are serializable; reads hold it for reading. Host effects
// run after, without mu (effects.go). A watch loop applies the commits of
// other writers of the store (watch.go).
type Service struct {
	mu    sync.RWMutex
	st    *state
	gw    Gateway
	ports map[string]*openPort // by spec: the ports that are (or failed to be) open
	uplnk tap.Port

	store   Store
	dp      DataPath
	factory PortFactory
	log     *slog.Logger
	now     func() time.Time
	rand    io.Reader
	observe func(op, result string, d time.Duration)
	last    *vswitch.Config
	pub     uint64 // Gen of the last published config

	// Host effects (effects.go): the runner, the records whose effects
	// are pending, how long an operation waits for its effects and how
	// long one QMP conversation may take.
	fx             *fxRunner
	pending        map[string]*opEffects
	fxWait         time.Duration
	hotplugTimeout time.Duration

	stopWatch context.CancelFunc
	watchDone chan struct{}
}

type openPort struct {
	port tap.Port
	err  error
}

// state is the committed state and its indexes. It is only modified by
// commit, with Service.mu held for writing.
type state struct {
	gen       uint64
	subnets   map[string]*Subnet
	groups    map[string]*Group
	instances map[string]*Instance
	enis      map[string]*ENI
	eips      map[string]*Address

	ipOwner    map[netip.Addr]string // private IP -> record
	slots      map[slot]string       // (instance, device index) -> record
	macs       map[string]string     // MAC -> record
	eipPublic  map[netip.Addr]string // public IP -> allocation
	eipPrivate map[netip.Addr]string // associated private IP -> allocation
	specs      map[string]string     // port spec -> instance
	attachIDs  map[string]string     // attachment id -> record

	// recs is the Records slice of the last published config; recIdx
	// locates a record in it. A publish copies recs and rewrites only the
	// records that changed, so its cost does not grow with flows and grows
	// with records only by a memory copy.
	recs   []vswitch.Record
	recIdx map[string]int
}

type slot struct {
	inst string
	idx  int
}

func newState() *state {
	return &state{
		subnets:    map[string]*Subnet{},
		groups:     map[string]*Group{},
		instances:  map[string]*Instance{},
		enis:       map[string]*ENI{},
		eips:       map[string]*Address{},
		ipOwner:    map[netip.Addr]string{},
		slots:      map[slot]string{},
		macs:       map[string]string{},
		eipPublic:  map[netip.Addr]string{},
		eipPrivate: map[netip.Addr]string{},
		specs:      map[string]string{},
		attachIDs:  map[string]string{},
		recIdx:     map[string]int{},
	}
}

func (st *state) indexENI(e *ENI, add bool) {
	set := func(m map[netip.Addr]string, k netip.Addr) {
		if add {
			m[k] = e.ID
		} else if m[k] == e.ID {
			delete(m, k)
		}
	}
	for _, ip := range e.PrivateIPs {
		set(st.ipOwner, ip)
	}
	for _, a := range e.Attachments {
		k := slot{a.InstanceID, a.DeviceIndex}
		if add {
			st.slots[k] = e.ID
			st.attachIDs[a.ID] = e.ID
		} else {
			if st.slots[k] == e.ID {
				delete(st.slots, k)
			}
			if st.attachIDs[a.ID] == e.ID {
				delete(st.attachIDs, a.ID)
			}
		}
	}
	if add {
		st.macs[e.MAC] = e.ID
	} else if st.macs[e.MAC] == e.ID {
		delete(st.macs, e.MAC)
	}
}

func (st *state) indexEIP(a *Address, add bool) {
	if add {
		st.eipPublic[a.PublicIP] = a.ID
		if a.ENIID != "" {
			st.eipPrivate[a.PrivateIP] = a.ID
		}
		return
	}
	if st.eipPublic[a.PublicIP] == a.ID {
		delete(st.eipPublic, a.PublicIP)
	}
	if a.ENIID != "" && st.eipPrivate[a.PrivateIP] == a.ID {
		delete(st.eipPrivate, a.PrivateIP)
	}
}

func (st *state) indexInstance(in *Instance, add bool) {
	for _, p := range in.Ports {
		if add {
			st.specs[p.Spec] = in.ID
		} else if st.specs[p.Spec] == in.ID {
			delete(st.specs, p.Spec)
		}
	}
}

// Open loads the committed state from the store, opens the uplink and every
// instance's ports, and publishes the state to the data path.
func Open(o Options) (*Service, error) {
	s := &Service{
		st:      newState(),
		gw:      o.Gateway,
		ports:   map[string]*openPort{},
		store:   o.Store,
		dp:      o.DataPath,
		factory: o.Ports,
		log:     o.Logger,
		now:     o.Now,
		rand:    o.Rand,
		observe: o.Observe,

		fx:             newFxRunner(),
		pending:        map[string]*opEffects{},
		hotplugTimeout: defaultHotplugTimeout,
	}
	s.fxWait = s.hotplugTimeout + 2*time.Second
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if err := validateGateway(o.Gateway); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	if o.Gateway.Uplink != "" {
		if _, err := parseSpec("uplink", o.Gateway.Uplink, true); err != nil {
			return nil, err
		}
		p, err := s.factory.Open(o.Gateway.Uplink)
		if err != nil {
			return nil, fmt.Errorf("open uplink %s: %w", o.Gateway.Uplink, err)
		}
		if err := s.dp.AddPort(p); err != nil {
			p.Close()
			return nil, fmt.Errorf("add uplink %s: %w", o.Gateway.Uplink, err)
		}
		s.uplnk = p
	}
	for _, in := range sortedValues(s.st.instances) {
		for _, p := range in.Ports {
			if id := s.st.slots[slot{in.ID, p.DeviceIndex}]; p.Hotplug && id == "" {
				continue // a free hot-plug slot has no port
			}
			s.openPortLocked(p.Spec)
		}
	}
	s.st.recs = s.st.recs[:0]
	for _, e := range sortedValues(s.st.enis) {
		s.st.recIdx[e.ID] = len(s.st.recs)
		s.st.recs = append(s.st.recs, s.record(s.st.view(), e))
	}
	cfg := s.config(s.st.view(), s.st.gen, s.st.recs)
	if err := s.dp.Apply(cfg); err != nil {
		return nil, fmt.Errorf("publish restored state (gen %d): %w", s.st.gen, err)
	}
	all := make(map[string]bool, len(s.st.enis))
	for id := range s.st.enis {
		all[id] = true
	}
	s.configureGuestsLocked(all)
	s.last, s.pub = cfg, cfg.Gen
	s.replugAfterRestart()
	s.startWatch()
	s.log.Info("state restored", "gen", s.st.gen, "subnets", len(s.st.subnets), "groups", len(s.st.groups),
		"instances", len(s.st.instances), "enis", len(s.st.enis), "eips", len(s.st.eips))
	return s, nil
}

func validateGateway(g Gateway) error {
	if g.PublicCIDR.IsValid() {
		if !g.PublicCIDR.Addr().Is4() {
			return invalid("public-cidr", g.PublicCIDR, "must be IPv4")
		}
		if g.PublicCIDR != g.PublicCIDR.Masked() {
			return invalid("public-cidr", g.PublicCIDR, "not a network address, did you mean "+g.PublicCIDR.Masked().String())
		}
	}
	if g.PublicIP.IsValid() && !g.PublicIP.Is4() {
		return invalid("public-ip", g.PublicIP, "must be IPv4")
	}
	if g.Upstream.IsValid() && !g.Upstream.Is4() {
		return invalid("upstream", g.Upstream, "must be IPv4")
	}
	return nil
}

func (s *Service) load() error {
	objs, gen, err := s.store.Load()
	if err != nil {
		return internal("load store", err)
	}
	tx := s.st.txn(Root)
	for _, b := range objectBuckets {
		for k, v := range objs[b] {
			if err := tx.putStored(b, k, v); err != nil {
				return err
			}
		}
	}
	s.installLocked(tx, gen, nil, nil)
	for _, p := range s.st.check() {
		s.log.Error("restored state is inconsistent", "problem", p)
	}
	return nil
}

// openPortLocked opens spec through the factory and registers it with the
// data path. A failure is remembered: the port is "down" and attachments to
// it are refused (detach --force still works).
func (s *Service) openPortLocked(spec string) (*openPort, error) {
	if op, ok := s.ports[spec]; ok && op.err == nil {
		return op, nil
	}
	op := s.dialPort(spec)
	s.ports[spec] = op
	return op, op.err
}

// dialPort opens spec through the factory and registers it with the data
// path (no lock needed).
func (s *Service) dialPort(spec string) *openPort {
	op := &openPort{}
	p, err := s.factory.Open(spec)
	if err == nil {
		if ra, ok := s.dp.(reopenAdder); ok {
			// The data path reopens the port itself when its device
			// disappears and comes back.
			err = ra.AddPortReopen(p, func() (tap.Port, error) { return s.factory.Open(spec) })
		} else {
			err = s.dp.AddPort(p)
		}
		if err != nil {
			p.Close()
		}
	}
	if err != nil {
		op.err = err
		s.log.Warn("port down", "spec", spec, "err", err)
	} else {
		op.port = p
	}
	return op
}

// openPort is openPortLocked for a host effect: the port is opened without
// s.mu and installed with it; a failure is not remembered. It reports
// whether it opened the port (false: it was open already).
func (s *Service) openPort(spec string) (bool, error) {
	s.mu.RLock()
	op, ok := s.ports[spec]
	s.mu.RUnlock()
	if ok && op.err == nil {
		return false, nil
	}
	op = s.dialPort(spec)
	if op.err != nil {
		return false, op.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.ports[spec]; ok && cur.err == nil {
		// Opened meanwhile by another operation: a port is never
		// registered twice.
		s.dp.RemovePort(op.port.Name())
		op.port.Close()
		return false, nil
	}
	s.ports[spec] = op
	return true, nil
}

// closePort is closePortLocked for a host effect: the port is forgotten
// with s.mu, removed from the data path and closed without it.
func (s *Service) closePort(spec string) {
	s.mu.Lock()
	op, ok := s.ports[spec]
	delete(s.ports, spec)
	s.mu.Unlock()
	if ok {
		s.dropPort(spec, op)
	}
}

func (s *Service) dropPort(spec string, op *openPort) {
	if op.port != nil {
		if err := s.dp.RemovePort(op.port.Name()); err != nil {
			s.log.Warn("remove port", "spec", spec, "err", err)
		}
		op.port.Close()
	}
}

func (s *Service) closePortLocked(spec string) {
	op, ok := s.ports[spec]
	if !ok {
		return
	}
	delete(s.ports, spec)
	s.dropPort(spec, op)
}

// portUp returns the data path name of the port behind spec, or "" when it
// is not open. An open port stays in the published config even while its
// driver reports it down, so that it carries traffic again when it comes
// back without a republication.
func (s *Service) portUp(spec string) string {
	if op, ok := s.ports[spec]; ok && op.port != nil {
		return op.port.Name()
	}
	return ""
}

// operational reports whether the port behind spec is open and, when its
// driver can tell (tap.Operationaler), up. Attaching needs it; detaching
// without force too. A stream port is operational as soon as it listens:
// its peer (QEMU) connects when the VM starts, typically after its records
// are attached.
func (s *Service) operational(spec string) bool {
	op, ok := s.ports[spec]
	if !ok || op.port == nil {
		return false
	}
	if o, ok := op.port.(tap.Operationaler); ok && !specIs(spec, tap.Spec.IsStream) {
		return o.Operational()
	}
	return true
}

// newID returns prefix + 8 random hex digits not taken according to used.
func (s *Service) newID(prefix string, used func(string) bool) string {
	var b [4]byte
	for {
		if _, err := io.ReadFull(s.rand, b[:]); err != nil {
			panic("control: random source failed: " + err.Error())
		}
		id := prefix + hex.EncodeToString(b[:])
		if !used(id) {
			return id
		}
	}
}

// newMAC returns a locally administered unicast MAC not used by any record.
func (s *Service) newMAC(used func(string) bool) string {
	var b [6]byte
	for {
		if _, err := io.ReadFull(s.rand, b[:]); err != nil {
			panic("control: random source failed: " + err.Error())
		}
		b[0] = b[0]&0xfc | 0x02
		m := net.HardwareAddr(b[:]).String()
		if !used(m) {
			return m
		}
	}
}

// check returns every violated invariant of the state; nil when consistent.
func (st *state) check() []string {
	var bad []string
	owner := map[netip.Addr]string{}
	slots := map[slot]string{}
	for _, e := range sortedValues(st.enis) {
		sn, ok := st.subnets[e.SubnetID]
		if !ok {
			bad = append(bad, fmt.Sprintf("record %s: subnet %s missing", e.ID, e.SubnetID))
		}
		for _, ip := range e.PrivateIPs {
			if o, dup := owner[ip]; dup {
				bad = append(bad, fmt.Sprintf("ip %s owned by %s and %s", ip, o, e.ID))
			}
			owner[ip] = e.ID
			if ok && !sn.CIDR.Contains(ip) {
				bad = append(bad, fmt.Sprintf("record %s: ip %s outside %s", e.ID, ip, sn.CIDR))
			}
		}
		for _, g := range e.SecurityGroups {
			if _, ok := st.groups[g]; !ok {
				bad = append(bad, fmt.Sprintf("record %s: group %s missing", e.ID, g))
			}
		}
		for _, a := range e.Attachments {
			in, ok := st.instances[a.InstanceID]
			if !ok || a.DeviceIndex < 0 || a.DeviceIndex >= len(in.Ports) {
				bad = append(bad, fmt.Sprintf("record %s: attachment %s to missing port %s/%d", e.ID, a.ID, a.InstanceID, a.DeviceIndex))
			}
			k := slot{a.InstanceID, a.DeviceIndex}
			if o, dup := slots[k]; dup {
				bad = append(bad, fmt.Sprintf("port %s/%d attached to %s and %s", k.inst, k.idx, o, e.ID))
			}
			slots[k] = e.ID
		}
	}
	pub := map[netip.Addr]bool{}
	for _, a := range sortedValues(st.eips) {
		if pub[a.PublicIP] {
			bad = append(bad, fmt.Sprintf("public ip %s allocated twice", a.PublicIP))
		}
		pub[a.PublicIP] = true
		if a.ENIID != "" {
			if e, ok := st.enis[a.ENIID]; !ok || !e.HasIP(a.PrivateIP) {
				bad = append(bad, fmt.Sprintf("eip %s associated with missing %s/%s", a.ID, a.ENIID, a.PrivateIP))
			}
		}
	}
	return bad
}

// Check returns every violated invariant of the committed state (nil when
// it is consistent). Tests and the restart path use it.
func (s *Service) Check() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.checkLocked()
}

// checkLocked is Check with s.mu held.
func (s *Service) checkLocked() []string {
	bad := s.st.check()
	if s.last != nil {
		seen := map[netip.Addr]string{}
		for _, r := range s.last.Records {
			for _, ip := range r.IPs {
				if o, dup := seen[ip]; dup {
					bad = append(bad, fmt.Sprintf("published ip %s in %s and %s", ip, o, r.ID))
				}
				seen[ip] = r.ID
			}
		}
		if len(s.last.Records) != len(s.st.enis) {
			bad = append(bad, fmt.Sprintf("published %d records, state has %d", len(s.last.Records), len(s.st.enis)))
		}
		// The incrementally maintained records must be what a full
		// rebuild would publish.
		v := s.st.view()
		for id, e := range s.st.enis {
			if o := s.pending[id]; o != nil {
				// It keeps its previous binding until its host
				// effects complete.
				if o.failed != "" {
					bad = append(bad, fmt.Sprintf("record %s: host effects of %s failed, retrying: %s", id, o.op, o.failed))
				}
				continue
			}
			i, ok := s.st.recIdx[id]
			if !ok || i >= len(s.last.Records) {
				bad = append(bad, fmt.Sprintf("record %s not published", id))
				continue
			}
			if got, want := s.last.Records[i], s.record(v, e); !reflect.DeepEqual(got, want) {
				bad = append(bad, fmt.Sprintf("record %s published as %+v, want %+v", id, got, want))
			}
		}
	}
	bad = append(bad, s.checkDataPathLocked()...)
	return bad
}

// Config returns the last published configuration.
func (s *Service) Config() *vswitch.Config {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.last
}

// Close stops the watch and the effects runner and closes the uplink and
// every port the service opened.
func (s *Service) Close() error {
	s.stopWatch()
	<-s.watchDone
	s.fx.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for spec := range s.ports {
		s.closePortLocked(spec)
	}
	if s.uplnk != nil {
		s.dp.RemovePort(s.uplnk.Name())
		s.uplnk.Close()
		s.uplnk = nil
	}
	return nil
}

func sortedValues[T any](m map[string]*T) []*T {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func insertSorted(list []uint32, v uint32) []uint32 {
	i, found := slices.BinarySearch(list, v)
	if found {
		return list
	}
	return slices.Insert(list, i, v)
}
