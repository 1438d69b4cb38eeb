package vswitch

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"roam/internal/packet"
	"roam/nat"
	"roam/tap"
)

// Options configure a Switch.
type Options struct {
	Now               func() time.Time // the clock; nil means time.Now
	MaxFlows          int              // conntrack limit (0 = 1<<20)
	DefaultFlowBudget int              // per-record conntrack budget (0 = MaxFlows)
	MaxRecords        int              // owner slots for budgets (0 = 1<<16)
	MSS               uint16           // TCP MSS clamp on SYNs (0 = off)
	BatchSize         int              // frames per read (0 = 64)
	Timeouts          nat.Timeouts
	PAT               nat.PATOptions
	Frags             nat.FragOptions
	// EndpointIndependentFiltering admits inbound packets to a PAT mapping
	// from any remote (RFC 4787 REQ-8 "endpoint-independent filtering");
	// false (the default, as Linux conntrack does) admits only the remote
	// endpoints the mapping has sent to.
	EndpointIndependentFiltering bool
	// AddressDependentFiltering (when EndpointIndependentFiltering is
	// off) admits inbound packets to a PAT mapping from any port of a
	// remote address the mapping has a flow with (RFC 4787 REQ-8
	// "address-dependent filtering"), instead of from those remote
	// endpoints only.
	AddressDependentFiltering bool
	// ICMPErrorRate bounds the ICMP errors roam originates (time exceeded,
	// fragmentation needed, administratively prohibited), per second for
	// the whole switch (0 = DefaultICMPErrorRate, < 0 = none sent): the
	// last resort behind ICMPSourceRate. Fragmentation-needed to a record
	// within its share is not subject to it, and fragmentation-needed to
	// the uplink has a cap of this rate of its own.
	ICMPErrorRate int
	// ICMPSourceRate bounds the ICMP errors one record, or one source
	// address on the uplink, may cause, per second in bursts of twice as
	// many, fragmentation-needed apart from the other errors (0 =
	// DefaultICMPSourceRate, < 0 = no limit but ICMPErrorRate). Errors a
	// record's packets cause are counted in its counters (ICMPSent and
	// ICMPLimited).
	ICMPSourceRate int
	// DHCPRate bounds the DHCP messages answered per second on one port
	// (0 = DefaultDHCPRate, < 0 = none); the rest are dropped and counted
	// as dhcp_rate_limited, so a guest flooding DHCP costs roam little.
	DHCPRate int
	// DrainGrace is how long the port a record was moved away from may
	// still send on the record's established flows, so that frames it had
	// in flight at the reassign are not lost (0 = DefaultDrainGrace,
	// negative = none). Nothing is delivered to that port after the
	// reassign, and no new flow can start from it.
	DrainGrace time.Duration
	Logger     *slog.Logger
}

// Switch is roam's data path: ports, the batch pipeline, routing by record,
// the local responders, security groups and the NAT gateway over one
// conntrack table.
type Switch struct {
	o      Options
	now    func() time.Time
	log    *slog.Logger
	snap   atomic.Pointer[Snapshot]
	ct     *nat.Table
	frags  *nat.Frags
	c      counterSet
	budget int32
	nb     neighbors
	gen    atomic.Uint64 // snapshot generations, for copy on write

	mu       sync.Mutex // guards ports, records, started, applyMu ordering
	applyMu  sync.Mutex // serializes Apply
	ports    map[string]*portState
	records  map[string]*recordState
	nextSlot uint32
	started  bool
	wg       sync.WaitGroup
	workers  chan *worker // idle workers for Process (not a sync.Pool: GC would drop them)

	icmp         icmpLimits    // ICMPErrorRate, ICMPSourceRate
	exhausted    atomic.Uint64 // PAT exhaustion refusals since the last log line
	exhaustedLog atomic.Uint32 // when that line was logged (Unix s)
}

// recordState is what survives snapshots for a record: its counters and
// its owner slot in conntrack.
type recordState struct {
	slot uint32
	c    counterSet
	icmp [icmpKinds]bucket // the record's share of ICMP errors (icmplimit.go)
}

// portState is a registered port.
type portState struct {
	name    string
	p       tap.Port
	id      uint64 // random, for rendezvous hashing of flows over attachments
	wmu     sync.Mutex
	guest   atomic.Uint64 // learned guest MAC (+1<<48 when set)
	up      atomic.Bool
	closed  chan struct{}
	shut    sync.Once // closes closed
	running bool
	c       counterSet
	reopen  func() (tap.Port, error) // nil: the port cannot be reopened
	downs   atomic.Uint64            // times the port went down
	reopens atomic.Uint64            // times it was reopened
	dhcpWin window                   // Options.DHCPRate
}

// port returns the port's current driver (it changes when reopened).
func (p *portState) port() tap.Port {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.p
}

func (p *portState) guestMAC() (packet.MAC, bool) {
	v := p.guest.Load()
	if v == 0 {
		return packet.MAC{}, false
	}
	var m packet.MAC
	for i := 5; i >= 0; i-- {
		m[i] = byte(v)
		v >>= 8
	}
	return m, true
}

func (p *portState) learn(m packet.MAC) {
	v := uint64(1) << 48
	for i := 0; i < 6; i++ {
		v |= uint64(m[i]) << (8 * (5 - i))
	}
	if p.guest.Load() != v {
		p.guest.Store(v)
	}
}

// New returns a switch with an empty configuration.
func New(o Options) *Switch {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxFlows <= 0 {
		o.MaxFlows = 1 << 20
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 64
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = 1 << 16
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DrainGrace == 0 {
		o.DrainGrace = DefaultDrainGrace
	}
	if o.ICMPErrorRate == 0 {
		o.ICMPErrorRate = DefaultICMPErrorRate
	}
	if o.ICMPSourceRate == 0 {
		o.ICMPSourceRate = DefaultICMPSourceRate
	}
	if o.DHCPRate == 0 {
		o.DHCPRate = DefaultDHCPRate
	}
	switch {
	case o.EndpointIndependentFiltering:
		o.PAT.Filtering = nat.FilterEndpointIndependent
	case o.AddressDependentFiltering:
		o.PAT.Filtering = nat.FilterAddress
	}
	s := &Switch{
		o:       o,
		now:     o.Now,
		log:     o.Logger,
		ct:      nat.NewTable(nat.Options{MaxFlows: o.MaxFlows, MaxOwners: o.MaxRecords, Timeouts: o.Timeouts, PAT: o.PAT}),
		frags:   nat.NewFrags(o.Frags),
		ports:   map[string]*portState{},
		records: map[string]*recordState{},
	}
	s.icmp.init(&s.o, rand.Uint64())
	s.budget = int32(o.DefaultFlowBudget)
	empty, _ := compile(&Config{}, func(string) *portState { return nil }, nil, s.budget)
	s.snap.Store(empty)
	s.workers = make(chan *worker, 8)
	return s
}

// Conntrack returns the switch's conntrack table.
func (s *Switch) Conntrack() *nat.Table { return s.ct }

// Snapshot returns the configuration in force.
func (s *Switch) Config() *Config { return s.snap.Load().cfg }

// Apply validates cfg, compiles it and publishes it in one atomic step: the
// next batch on every port sees all of it, and no batch sees part of it.
// Conntrack is not touched: flows are keyed by addresses, so a record
// moving to another port keeps every flow. An invalid cfg changes nothing
// and the error names the field.
func (s *Switch) Apply(cfg *Config) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	var slotErr error
	snap, err := compile(cfg, s.portByName, func(id string) *recordState {
		st, err := s.recordState(id)
		if err != nil && slotErr == nil {
			slotErr = err
		}
		return st
	}, s.budget)
	if err != nil {
		return err
	}
	if slotErr != nil {
		return slotErr
	}
	snap.gen = s.gen.Add(1)
	old := s.snap.Load()
	snap.inheritDrains(old, old.allPorts(), s.now().UnixNano(), s.o.DrainGrace)
	prev := s.snap.Swap(snap)
	s.announce(prev, snap)
	s.applyFlowPolicies(prev, snap, nil)
	return nil
}

// ApplyDelta publishes cfg, which must differ from the config in force
// only in the records named by changed (modified, added or removed;
// everything else, subnets, groups, routes targets aside, the same). Only
// those records are compiled; the others' entries, and the index shards
// the change does not touch, are shared with the snapshot in force
// (shards.go), so a reassign costs about the same with 10K records as with
// 100K (BenchmarkApplyDelta: 20 µs and 100 µs, against 1.3 ms and 15 ms
// when the indexes were cloned whole).
// Like Apply, it is atomic and an invalid cfg changes nothing.
func (s *Switch) ApplyDelta(cfg *Config, changed []string) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	var slotErr error
	old := s.snap.Load()
	snap, err := old.delta(cfg, changed, s.portByName, func(id string) *recordState {
		st, err := s.recordState(id)
		if err != nil && slotErr == nil {
			slotErr = err
		}
		return st
	}, s.budget, s.gen.Add(1))
	if err != nil {
		return err
	}
	if slotErr != nil {
		return slotErr
	}
	snap.inheritDrains(old, snap.moved, s.now().UnixNano(), s.o.DrainGrace)
	snap.moved = nil
	prev := s.snap.Swap(snap)
	s.announce(prev, snap)
	s.applyFlowPolicies(prev, snap, changed)
	return nil
}

func (s *Switch) portByName(name string) *portState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ports[name]
}

func (s *Switch) recordState(id string) (*recordState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.records[id]; st != nil {
		return st, nil
	}
	if int(s.nextSlot) >= s.o.MaxRecords {
		return &recordState{}, fmt.Errorf("record %s: more than %d records", id, s.o.MaxRecords)
	}
	s.nextSlot++
	st := &recordState{slot: s.nextSlot}
	s.records[id] = st
	return st, nil
}

// AddPort registers a port. While the switch is started, a reader runs on
// it; a port is referred to by its name in Config.
func (s *Switch) AddPort(p tap.Port) error { return s.AddPortReopen(p, nil) }

// AddPortReopen registers a port that can be reopened: when its device
// disappears (errors wrapping tap.ErrDeviceGone), the port is marked not
// operational and reopen is tried with backoff until it succeeds; frames to
// the port are dropped and counted (port_down) meanwhile. The switch never
// stops because of one port.
func (s *Switch) AddPortReopen(p tap.Port, reopen func() (tap.Port, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := p.Name()
	if name == "" {
		return errors.New("port has no name")
	}
	if _, dup := s.ports[name]; dup {
		return fmt.Errorf("port %q: already added", name)
	}
	ps := &portState{name: name, p: p, id: rand.Uint64(), closed: make(chan struct{}), reopen: reopen}
	ps.up.Store(true)
	s.ports[name] = ps
	if s.started {
		s.startReaderLocked(ps)
	}
	return nil
}

// RemovePort closes and forgets a port. A record still attached to it in
// the published config drops traffic with reason port_down until the
// control plane publishes a config without it.
func (s *Switch) RemovePort(name string) error {
	s.mu.Lock()
	ps := s.ports[name]
	if ps == nil {
		s.mu.Unlock()
		return fmt.Errorf("port %q: no such port", name)
	}
	delete(s.ports, name)
	s.mu.Unlock()
	ps.up.Store(false)
	ps.shut.Do(func() { close(ps.closed) })
	return ps.port().Close()
}

// PortStatus describes a port.
type PortStatus struct {
	Name        string   `json:"name"`
	Operational bool     `json:"operational"`
	Downs       uint64   `json:"downs"`   // times the port went down
	Reopens     uint64   `json:"reopens"` // times it was reopened
	Counters    Counters `json:"counters"`
}

// Port returns a port's status.
func (s *Switch) Port(name string) (PortStatus, bool) {
	s.mu.Lock()
	ps := s.ports[name]
	s.mu.Unlock()
	if ps == nil {
		return PortStatus{}, false
	}
	return PortStatus{Name: name, Operational: ps.up.Load(), Downs: ps.downs.Load(), Reopens: ps.reopens.Load(), Counters: ps.c.snapshot()}, true
}

// Start starts a reader on every port.
func (s *Switch) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	for _, ps := range s.ports {
		s.startReaderLocked(ps)
	}
}

func (s *Switch) startReaderLocked(ps *portState) {
	if ps.running {
		return
	}
	ps.running = true
	s.startQueues(ps, ps.port(), true)
}

// queues returns the ports to read of a driver: its queues when it has
// several (tap.Multiqueue), else itself.
func queues(p tap.Port) []tap.Port {
	if mq, ok := p.(tap.Multiqueue); ok {
		if qs := mq.Queues(); len(qs) > 1 {
			return qs
		}
	}
	return []tap.Port{p}
}

// startQueues starts a reader per queue of driver p (with lead, queue 0's
// too): every queue is read by its own goroutine into its own buffers.
func (s *Switch) startQueues(ps *portState, p tap.Port, lead bool) {
	for i, q := range queues(p) {
		if i == 0 && !lead {
			continue
		}
		s.wg.Add(1)
		go s.reader(ps, q, i == 0)
	}
}

// reader reads queue p of port ps until the port is closed. The lead
// reader (queue 0) also reopens the port when its device disappears and
// restarts the other queues' readers; those just stop.
func (s *Switch) reader(ps *portState, p tap.Port, lead bool) {
	defer s.wg.Done()
	w := newWorker(s)
	frames := tap.NewFrames(s.o.BatchSize, tap.Headroom+tap.MaxFrame)
	for {
		n, err := p.Read(frames)
		if n > 0 {
			w.process(ps, frames[:n])
		}
		if err == nil {
			continue
		}
		select {
		case <-ps.closed:
			ps.up.Store(false)
			return
		default:
		}
		if errors.Is(err, tap.ErrClosed) {
			ps.up.Store(false)
			return
		}
		if ps.up.Swap(false) {
			ps.downs.Add(1)
			s.log.Warn("port down", "port", ps.name, "err", err)
		}
		if errors.Is(err, tap.ErrDeviceGone) {
			if !lead {
				return
			}
			if ps.reopen != nil {
				np := s.reopenPort(ps, ps.port())
				if np == nil {
					return
				}
				s.startQueues(ps, np, false)
				p = queues(np)[0]
				continue
			}
		}
		// A passing error: back off a little and read again.
		select {
		case <-ps.closed:
			return
		case <-time.After(100 * time.Millisecond):
		}
		ps.up.Store(true)
	}
}

// reopenPort closes a port whose device is gone and reopens it with
// backoff until it succeeds (it returns the new driver) or the port is
// removed (it returns nil).
func (s *Switch) reopenPort(ps *portState, old tap.Port) tap.Port {
	old.Close()
	delay := 100 * time.Millisecond
	for {
		select {
		case <-ps.closed:
			return nil
		case <-time.After(delay):
		}
		np, err := ps.reopen()
		if err == nil {
			ps.wmu.Lock()
			ps.p = np
			ps.wmu.Unlock()
			ps.reopens.Add(1)
			ps.up.Store(true)
			s.log.Info("port reopened", "port", ps.name)
			return np
		}
		if delay < 2*time.Second {
			delay *= 2
		}
	}
}

// Close stops every reader and closes every port.
func (s *Switch) Close() error {
	s.mu.Lock()
	ports := make([]*portState, 0, len(s.ports))
	for _, ps := range s.ports {
		ports = append(ports, ps)
	}
	s.mu.Unlock()
	var first error
	for _, ps := range ports {
		ps.shut.Do(func() { close(ps.closed) })
		if err := ps.port().Close(); err != nil && first == nil {
			first = err
		}
	}
	s.wg.Wait()
	return first
}

// Process runs one batch synchronously as if it had been read from the
// named port (pcap replay, tests, benchmarks). Frames are rewritten in
// place and written to their destination ports before Process returns.
func (s *Switch) Process(port string, frames []tap.Frame) {
	s.mu.Lock()
	ps := s.ports[port]
	s.mu.Unlock()
	var w *worker
	select {
	case w = <-s.workers:
	default:
		w = newWorker(s)
	}
	if ps == nil {
		w.dropAll(len(frames))
	} else {
		w.process(ps, frames)
	}
	select {
	case s.workers <- w:
	default:
	}
}

// Counters returns the switch's counters.
func (s *Switch) Counters() Counters {
	c := s.c.snapshot()
	c.Flows = s.ct.Len()
	c.FlowLimit = s.ct.Max()
	c.FlowsCreated = s.ct.Counters.Created.Load()
	c.Held = s.frags.Held()
	return c
}

// RecordCounters returns a record's counters (zero for an unknown record).
func (s *Switch) RecordCounters(id string) Counters {
	s.mu.Lock()
	st := s.records[id]
	s.mu.Unlock()
	if st == nil {
		return Counters{Drops: map[string]uint64{}}
	}
	c := st.c.snapshot()
	c.Packets = c.PacketsIn + c.PacketsOut
	c.Flows = s.ct.OwnerLen(st.slot)
	return c
}

// Flow is a conntrack entry as the control plane lists it.
type Flow struct {
	Proto    string            `json:"proto"`
	Orig     [2]netip.AddrPort `json:"-"`
	Src      netip.AddrPort    `json:"src"`
	Dst      netip.AddrPort    `json:"dst"`
	ReplySrc netip.AddrPort    `json:"reply_src"`
	ReplyDst netip.AddrPort    `json:"reply_dst"`
	State    string            `json:"state,omitempty"`
	Record   string            `json:"record,omitempty"`
	Expires  time.Time         `json:"expires"`
	Assured  bool              `json:"assured"`
	Replied  bool              `json:"replied"`
	Raw      nat.FlowInfo      `json:"-"`
}

// Flows lists conntrack entries charged to a record ("" lists all).
func (s *Switch) Flows(recordID string) []Flow {
	s.mu.Lock()
	bySlot := make(map[uint32]string, len(s.records))
	for id, st := range s.records {
		bySlot[st.slot] = id
	}
	var owner uint32
	if recordID != "" {
		st := s.records[recordID]
		if st == nil {
			s.mu.Unlock()
			return nil
		}
		owner = st.slot
	}
	s.mu.Unlock()
	var out []Flow
	s.ct.Flows(owner, uint32(s.now().Unix()), func(fi nat.FlowInfo) bool {
		out = append(out, Flow{
			Proto: nat.ProtoName(fi.Proto), Src: fi.Orig.SrcAddrPort(), Dst: fi.Orig.DstAddrPort(),
			ReplySrc: fi.Reply.SrcAddrPort(), ReplyDst: fi.Reply.DstAddrPort(),
			State: fi.State, Record: bySlot[fi.Owner], Expires: fi.Expires,
			Assured: fi.Assured, Replied: fi.Replied, Raw: fi,
		})
		return true
	})
	return out
}

// FlushFlows removes the conntrack entries charged to a record ("" removes
// all) and returns how many.
func (s *Switch) FlushFlows(recordID string) int {
	var owner uint32
	if recordID != "" {
		s.mu.Lock()
		st := s.records[recordID]
		s.mu.Unlock()
		if st == nil {
			return 0
		}
		owner = st.slot
	}
	return s.ct.Flush(owner)
}

// Expire removes expired conntrack entries (up to max) and timed-out
// fragments; the daemon calls it periodically, the pipeline a little after
// every batch.
func (s *Switch) Expire(max int) int {
	now := uint32(s.now().Unix())
	s.frags.Expire(now)
	return s.ct.Expire(now, max)
}
