package bench

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"roam/nat"
	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/memport"
)

// Defaults of ReplayOptions.
var (
	// DefaultInside are the RFC 1918 ranges.
	DefaultInside = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
	}
	// DefaultPublicIP is the gateway's public address (TEST-NET-3).
	DefaultPublicIP = netip.MustParseAddr("203.0.113.1")
	// DefaultEIPPool is where --one-to-one takes public IPs from: the
	// RFC 2544 benchmarking range 198.18.0.0/15 (131070 addresses). It is
	// neither of the documentation ranges that generated captures use for
	// remotes (198.51.100.0/24, 203.0.113.0/24), so a public IP never
	// collides with a remote.
	DefaultEIPPool = netip.MustParsePrefix("198.18.0.0/15")
)

// VerdictFrameTooLarge counts frames longer than tap.MaxFrame, which no port
// could hand to the data path.
const VerdictFrameTooLarge = "frame_too_large"

// UplinkPort is the name of the replay's uplink port.
const UplinkPort = "uplink"

// ReplaySG is the security group the replay attaches to every record unless
// ReplayOptions.StrictSG: it allows all traffic in and out, so that flows
// between inside hosts and unsolicited inbound flows to 1:1 public IPs
// reach conntrack and NAT instead of stopping at the default rules.
const ReplaySG = "sg-0000beac"

// ReplayOptions configure a replay.
type ReplayOptions struct {
	// Inside are the inside CIDRs, one subnet each (default: the RFC 1918
	// ranges). Every inside address that a capture shows becomes a record
	// on its own port; everything else is outside, behind the uplink.
	Inside []netip.Prefix
	// PublicIP is the gateway's public address, for PAT (default
	// 203.0.113.1).
	PublicIP netip.Addr
	// OneToOne gives each record a 1:1 public IP from EIPPool (default
	// DefaultEIPPool), in the order of the records' addresses.
	OneToOne bool
	EIPPool  netip.Prefix
	// Loop replays the capture this many times (default 1), each loop
	// shifted in time by the capture's duration.
	Loop int
	// BatchSize is the most frames per Process call (default 64).
	BatchSize int
	// MaxFlows is the conntrack limit (0: the switch's default).
	MaxFlows int
	// StrictSG leaves records without a security group: as in AWS, all
	// egress and no unsolicited ingress. By default they get ReplaySG.
	StrictSG bool
	// Logger receives the switch's logs (default: discarded).
	Logger *slog.Logger
}

// Result is what a replay measured. Times cover Switch.Process only.
type Result struct {
	File     string  `json:"file,omitempty"`
	Loops    int     `json:"loops"`
	Records  int     `json:"records"`
	Packets  uint64  `json:"packets"` // every packet of every loop, including those the harness dropped
	Seconds  float64 `json:"seconds"` // time inside Switch.Process
	PPS      float64 `json:"pps"`     // Packets / Seconds
	NsPerPkt float64 `json:"ns_per_packet"`
	// Allocs is the heap allocations (runtime.MemStats.Mallocs) during the
	// run, per packet.
	Allocs float64 `json:"allocs_per_packet"`
	// WallSeconds includes the harness's work between batches.
	WallSeconds  float64 `json:"wall_seconds"`
	Flows        int     `json:"flows"`         // conntrack entries at the end
	FlowsCreated uint64  `json:"flows_created"` // conntrack entries created
	Translations uint64  `json:"translations"`  // forwarded packets that NAT rewrote
	Forwarded    uint64  `json:"forwarded"`
	Local        uint64  `json:"local"`
	Dropped      uint64  `json:"dropped"`
	// Verdicts counts every packet once: forwarded, local, or its drop
	// reason. They add up to Packets.
	Verdicts map[string]uint64 `json:"verdicts"`
	// Drops counts dropped packets by reason (the switch's and the
	// harness's).
	Drops map[string]uint64 `json:"drops"`
	// Delivered counts the frames written to the uplink and to the
	// records' ports.
	DeliveredUplink uint64   `json:"delivered_uplink"`
	DeliveredInside uint64   `json:"delivered_inside"`
	Notes           []string `json:"notes,omitempty"`
}

// Replay replays c, already in memory, through a new switch; see Replayer.
func Replay(c *Capture, o ReplayOptions) (*Result, error) {
	r, err := NewReplayer(c, o)
	if err != nil {
		return nil, err
	}
	return r.Run(), nil
}

// Replayer replays one capture through an in-process switch. It decides
// everything it can before the clock starts: which port each frame enters
// on, the batches, the records and the configuration.
//
// Ports. Every inside address that appears as a source or destination of an
// IPv4 packet becomes a record with its own in-memory port (a
// memport.Sink); the uplink is another sink. An IPv4 frame whose source is
// a record enters on that record's port; every other IPv4 frame enters on
// the uplink; other frames (ARP, IPv6, ...) enter on the port of the record
// whose MAC sent them, else on the uplink.
//
// Records. A record's MAC is the one the capture shows for its address when
// that is a unicast MAC no other record has, else MACFromIPv4 of the
// address. An inside address that sends frames but is a subnet's network,
// gateway or broadcast address (which the switch reserves; captures often
// have a host on 10.0.0.1 or 192.168.0.1) is renumbered to the highest free address of
// its subnet in every frame (IPv4 headers, embedded ICMP error headers, ARP),
// and a note says so; when the subnet has no free address, it gets no
// record and its frames enter on the uplink.
//
// NAT. A capture taken behind the NAT shows inbound packets addressed to
// private addresses; the replay rewrites them as they reach the gateway:
// to the record's 1:1 public IP (OneToOne, done once before the run), or
// to the public IP and the port PAT gave the private endpoint, learned from
// the translated outbound frames (done between batches, outside the timed
// section). Inbound packets for an endpoint with no mapping yet go to the
// public IP with their port unchanged; the switch counts them as it would
// any unsolicited packet.
//
// Clock. Before each batch the switch's clock is set to the capture time of
// the batch's first frame (plus the loop's shift); a batch never spans a
// second boundary of capture time, so the switch, whose clock has one-second
// resolution, sees every second the capture does.
type Replayer struct {
	o       ReplayOptions
	c       *Capture
	sw      *vswitch.Switch
	cfg     *vswitch.Config
	ports   []string // ports[0] is the uplink
	sinks   []*memport.Sink
	frames  [][]byte // prepared copies of the capture's frames
	times   []int64
	meta    []frameMeta
	batches []batch
	learned map[l4Key]uint16
	pub     [4]byte
	now     atomic.Int64
	bufs    []tap.Frame
	harness map[string]uint64 // per-loop verdicts decided before the switch
	notes   []string
	shift   int64 // added to capture times: the loops (and drains) so far
}

// fragTimeout is how long the replay's switch tracks a fragmented datagram.
const fragTimeout = 30 * time.Second

type frameMeta struct {
	port int32
	kind uint8
	l3   uint16 // offset of the IPv4 header
}

// Frame kinds.
const (
	metaPlain uint8 = iota
	metaLearn       // outbound through PAT: learn the mapping after Process
	metaPATIn       // inbound to a private endpoint: rewrite to the PAT mapping
)

type batch struct {
	start, end int32
	port       int32
	learn      bool
}

// NewReplayer prepares the replay of c: it scans c for inside addresses,
// builds and applies the configuration, and plans the batches.
func NewReplayer(c *Capture, o ReplayOptions) (*Replayer, error) {
	r, err := prepare(c, o)
	if err != nil {
		return nil, err
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

// prepare does all of NewReplayer but creating the switch.
func prepare(c *Capture, o ReplayOptions) (*Replayer, error) {
	if len(o.Inside) == 0 {
		o.Inside = DefaultInside
	}
	o.Inside = slices.Clone(o.Inside)
	for i, p := range o.Inside {
		if !p.IsValid() || !p.Addr().Is4() || p.Bits() > 30 {
			return nil, fmt.Errorf("inside %s: want an IPv4 prefix of /30 or larger", p)
		}
		o.Inside[i] = p.Masked()
		for _, q := range o.Inside[:i] {
			if q.Overlaps(p) {
				return nil, fmt.Errorf("inside %s: overlaps %s", p, q)
			}
		}
	}
	if !o.PublicIP.IsValid() {
		o.PublicIP = DefaultPublicIP
	}
	if !o.PublicIP.Is4() {
		return nil, fmt.Errorf("public IP %s: want an IPv4 address", o.PublicIP)
	}
	if !o.EIPPool.IsValid() {
		o.EIPPool = DefaultEIPPool
	}
	if !o.EIPPool.Addr().Is4() {
		return nil, fmt.Errorf("EIP pool %s: want an IPv4 prefix", o.EIPPool)
	}
	o.EIPPool = o.EIPPool.Masked()
	if o.Loop <= 0 {
		o.Loop = 1
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Replayer{o: o, c: c, pub: o.PublicIP.As4(), harness: map[string]uint64{}}
	for k, v := range c.Dropped {
		r.harness[k] += v
	}
	r.notes = append(r.notes, c.Notes...)
	if err := r.plan(); err != nil {
		return nil, err
	}
	return r, nil
}

// host is an inside address seen in the capture.
type host struct {
	ip     uint32
	mac    [6]byte
	srcMAC bool // mac was seen as the source of the host's frames
	port   int32
	public [4]byte // 1:1 public IP
}

func (r *Replayer) insideOf(a uint32) int {
	ip := netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
	for i, p := range r.o.Inside {
		if p.Contains(ip) {
			return i
		}
	}
	return -1
}

func unicastIP(a uint32) bool {
	return a != 0 && a>>28 != 0xe && a != 0xffffffff
}

func unicastMAC(m [6]byte) bool { return m[0]&1 == 0 && m != [6]byte{} }

// plan scans the capture, builds the configuration and plans the batches.
func (r *Replayer) plan() error {
	pkts := r.c.Packets
	hosts := map[uint32]*host{}
	for _, p := range pkts {
		l3, ok := ipv4Off(p.Data)
		if !ok {
			continue
		}
		ip := p.Data[l3:]
		src, dst := binary.BigEndian.Uint32(ip[12:]), binary.BigEndian.Uint32(ip[16:])
		if unicastIP(src) && r.insideOf(src) >= 0 {
			h := hosts[src]
			if h == nil {
				h = &host{ip: src}
				hosts[src] = h
			}
			if !h.srcMAC {
				h.mac, h.srcMAC = [6]byte(p.Data[6:12]), true
			}
		}
		if unicastIP(dst) && r.insideOf(dst) >= 0 {
			h := hosts[dst]
			if h == nil {
				h = &host{ip: dst, mac: [6]byte(p.Data[0:6])}
				hosts[dst] = h
			}
		}
	}
	ips := make([]uint32, 0, len(hosts))
	for ip := range hosts {
		ips = append(ips, ip)
	}
	slices.Sort(ips)

	// The replay does not model the upstream router's ARP: every frame out
	// of the uplink goes to UpstreamMAC.
	cfg := &vswitch.Config{PublicIP: r.o.PublicIP, Uplink: UplinkPort, UpstreamMAC: net.HardwareAddr(RouterMAC[:])}
	if r.o.OneToOne {
		cfg.PublicCIDR = r.o.EIPPool
	}
	if !r.o.StrictSG {
		open := []vswitch.Rule{{CIDR: netip.MustParsePrefix("0.0.0.0/0")}}
		cfg.Groups = []vswitch.Group{{ID: ReplaySG, Ingress: open, Egress: open}}
	}
	type subnetInfo struct{ net, gw, bcast uint32 }
	subnets := make([]subnetInfo, len(r.o.Inside))
	for i, p := range r.o.Inside {
		id := fmt.Sprintf("subnet-%08x", i+1)
		cfg.Subnets = append(cfg.Subnets, vswitch.Subnet{ID: id, Prefix: p})
		n := be32(p.Addr().As4())
		subnets[i] = subnetInfo{n, n + 1, n | ^(^uint32(0) << (32 - p.Bits()))}
	}
	r.ports = []string{UplinkPort}
	macs := map[[6]byte]bool{}
	byMAC := map[[6]byte]int32{} // captured and record MACs -> port
	eip := be32(r.o.EIPPool.Addr().As4())
	eipLast := eip | ^(^uint32(0) << (32 - r.o.EIPPool.Bits()))
	pubIP := be32(r.pub)
	// Hosts on a subnet's reserved addresses (network, gateway, broadcast)
	// cannot be records: renumber them to free addresses from the top of
	// their subnet, in every frame.
	remap := map[uint32]uint32{}
	for _, ip := range ips {
		sn := r.insideOf(ip)
		s := subnets[sn]
		if ip != s.net && ip != s.gw && ip != s.bcast {
			continue
		}
		if !hosts[ip].srcMAC {
			// Only a destination: a directed broadcast, or traffic
			// for the gateway. Leave it to the switch.
			delete(hosts, ip)
			continue
		}
		to := s.bcast - 1
		for ; to > s.gw && (hosts[to] != nil || to == s.net || to == s.gw); to-- {
		}
		if to <= s.gw {
			r.notes = append(r.notes, fmt.Sprintf("%s is a reserved address (network, gateway or broadcast) of subnet %s, which has no free address for it: no record; its frames enter on the uplink",
				addrOf(ip), r.o.Inside[sn]))
			delete(hosts, ip)
			continue
		}
		r.notes = append(r.notes, fmt.Sprintf("%s is a reserved address (network, gateway or broadcast) of subnet %s: renumbered to %s",
			addrOf(ip), r.o.Inside[sn], addrOf(to)))
		remap[ip] = to
		h := hosts[ip]
		delete(hosts, ip)
		h.ip = to
		hosts[to] = h
	}
	ips = ips[:0]
	for ip := range hosts {
		ips = append(ips, ip)
	}
	slices.Sort(ips)
	for _, ip := range ips {
		h := hosts[ip]
		sn := r.insideOf(ip)
		n := len(r.ports)
		id := fmt.Sprintf("eni-%08x", n)
		mac := h.mac
		if !unicastMAC(mac) || macs[mac] {
			mac = MACFromIPv4([4]byte(addrOf(ip).AsSlice()))
			for k := 1; macs[mac]; k++ {
				mac = [6]byte{0x02, 0x01, byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}
			}
		}
		macs[mac] = true
		if h.srcMAC {
			if _, dup := byMAC[h.mac]; !dup {
				byMAC[h.mac] = int32(n)
			}
		}
		byMAC[mac] = int32(n)
		h.port = int32(n)
		port := "port-" + addrOf(ip).String()
		r.ports = append(r.ports, port)
		rec := vswitch.Record{
			ID:              id,
			Subnet:          cfg.Subnets[sn].ID,
			IPs:             []netip.Addr{addrOf(ip)},
			MAC:             net.HardwareAddr(mac[:]),
			SourceDestCheck: true,
			Ports:           []string{port},
		}
		if !r.o.StrictSG {
			rec.Groups = []string{ReplaySG}
		}
		if r.o.OneToOne {
			for eip == be32(r.o.EIPPool.Addr().As4()) || eip == pubIP {
				eip++
			}
			if eip >= eipLast {
				return fmt.Errorf("EIP pool %s: too small for %d inside hosts", r.o.EIPPool, len(ips))
			}
			binary.BigEndian.PutUint32(h.public[:], eip)
			rec.PublicIPs = []vswitch.Association{{Public: addrOf(eip), Private: addrOf(ip)}}
			eip++
		}
		cfg.Records = append(cfg.Records, rec)
	}
	r.cfg = cfg

	// Frames: copy, decide the port and kind, apply static rewrites.
	var a arena
	maxLen := 0
	r.frames = make([][]byte, 0, len(pkts))
	r.times = make([]int64, 0, len(pkts))
	r.meta = make([]frameMeta, 0, len(pkts))
	type flowKey struct {
		l4Key
		raddr uint32
		rport uint16
	}
	seen := map[flowKey]bool{}
	endpoints := map[l4Key]bool{}
	for _, p := range pkts {
		if len(p.Data) > tap.MaxFrame {
			r.harness[VerdictFrameTooLarge]++
			continue
		}
		f := a.alloc(len(p.Data))
		copy(f, p.Data)
		m := frameMeta{}
		if len(remap) > 0 {
			if l3, ok := ipv4Off(f); ok {
				remapIPv4(f[l3:], remap)
			} else {
				remapARP(f, remap)
			}
		}
		if l3, ok := ipv4Off(f); ok {
			ip := f[l3:]
			m.l3 = uint16(l3)
			src, dst := binary.BigEndian.Uint32(ip[12:]), binary.BigEndian.Uint32(ip[16:])
			if h := hosts[src]; h != nil {
				m.port = h.port
				// Learn the PAT mapping from the first outbound packet
				// of each flow (again in every loop, in case the flow
				// expired and its endpoint got another port).
				if !r.o.OneToOne && hosts[dst] == nil && r.insideOf(dst) < 0 && unicastIP(dst) {
					if k, off, ok := outboundKey(ip); ok {
						fk := flowKey{k, dst, 0}
						if k.proto != protoICMP {
							fk.rport = binary.BigEndian.Uint16(ip[off+2:])
						}
						if !seen[fk] {
							seen[fk] = true
							m.kind = metaLearn
							endpoints[k] = true
						}
					}
				}
			} else if h := hosts[dst]; h != nil {
				if r.o.OneToOne {
					rewriteInbound(ip, h.public, -1)
				} else {
					m.kind = metaPATIn
				}
			}
		} else if len(f) >= 12 {
			if port, ok := byMAC[[6]byte(f[6:12])]; ok {
				m.port = port
			}
		}
		maxLen = max(maxLen, len(f))
		r.frames = append(r.frames, f)
		r.times = append(r.times, p.Time)
		r.meta = append(r.meta, m)
	}
	r.learned = make(map[l4Key]uint16, len(endpoints))

	// Batches: runs of frames entering on the same port, at most
	// BatchSize, within one second of capture time.
	for i := 0; i < len(r.frames); {
		b := batch{start: int32(i), port: r.meta[i].port}
		sec := floorDiv(r.times[i], 1e9)
		for i < len(r.frames) && i-int(b.start) < r.o.BatchSize && r.meta[i].port == b.port && floorDiv(r.times[i], 1e9) == sec {
			if r.meta[i].kind == metaLearn {
				b.learn = true
			}
			i++
		}
		b.end = int32(i)
		if r.batches == nil {
			r.batches = make([]batch, 0, len(r.frames)/r.o.BatchSize+1)
		}
		r.batches = append(r.batches, b)
	}
	// Buffers as a port driver would have them: headroom and room for a
	// full frame, since the switch may answer in place.
	r.bufs = tap.NewFrames(r.o.BatchSize, tap.Headroom+max(maxLen, tap.MaxFrame))
	return nil
}

// start creates the switch, its ports and applies the configuration.
func (r *Replayer) start() error {
	r.sw = vswitch.New(vswitch.Options{
		Now:      func() time.Time { return time.Unix(0, r.now.Load()) },
		MaxFlows: r.o.MaxFlows,
		Frags:    nat.FragOptions{Timeout: fragTimeout},
		Logger:   r.o.Logger,
	})
	for _, name := range r.ports {
		s := memport.NewSink(name)
		r.sinks = append(r.sinks, s)
		if err := r.sw.AddPort(s); err != nil {
			return err
		}
	}
	if err := r.sw.Apply(r.cfg); err != nil {
		return fmt.Errorf("replay configuration: %w", err)
	}

	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func addrOf(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// Switch returns the switch the replay feeds.
func (r *Replayer) Switch() *vswitch.Switch { return r.sw }

// Config returns the configuration the replay applied.
func (r *Replayer) Config() *vswitch.Config { return r.cfg }

// Run replays the capture o.Loop times and returns the measurements of this
// run. Run may be called again: the switch keeps its state and the clock
// continues after the previous run.
func (r *Replayer) Run() *Result {
	var dur int64
	if n := len(r.times); n > 0 {
		dur = r.times[n-1] - r.times[0]
	}
	c0 := r.sw.Counters()
	var d0 [2]uint64
	d0[0], d0[1] = r.delivered()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	wall := time.Now()
	var busy time.Duration
	for range r.o.Loop {
		for _, b := range r.batches {
			busy += r.batch(b, r.shift)
		}
		r.shift += dur
	}
	wallD := time.Since(wall)
	runtime.ReadMemStats(&ms1)
	c1 := r.sw.Counters()
	fed := uint64(len(r.frames)) * uint64(r.o.Loop)
	if n := (c1.Forwarded + c1.Local + c1.Dropped) - (c0.Forwarded + c0.Local + c0.Dropped); n < fed && len(r.times) > 0 {
		// Fragments still held for their first fragment have no verdict
		// yet: let the clock pass the fragment timeout so the switch
		// expires them, with an empty batch.
		r.shift += int64(fragTimeout + time.Second)
		r.now.Store(r.times[len(r.times)-1] + r.shift)
		r.sw.Process(UplinkPort, r.bufs[:0])
		c2 := r.sw.Counters()
		if m := (c2.Forwarded + c2.Local + c2.Dropped) - (c1.Forwarded + c1.Local + c1.Dropped); m > 0 {
			r.notes = append(r.notes, fmt.Sprintf("%d fragments were still held at the end; the clock was advanced %v to expire them", m, fragTimeout+time.Second))
		}
		c1 = c2
	}
	up, in := r.delivered()

	res := &Result{
		File:            r.c.Name,
		Loops:           r.o.Loop,
		Records:         len(r.cfg.Records),
		Seconds:         busy.Seconds(),
		WallSeconds:     wallD.Seconds(),
		Flows:           c1.Flows,
		FlowsCreated:    c1.FlowsCreated - c0.FlowsCreated,
		Translations:    c1.Translated - c0.Translated,
		Forwarded:       c1.Forwarded - c0.Forwarded,
		Local:           c1.Local - c0.Local,
		Dropped:         c1.Dropped - c0.Dropped,
		Verdicts:        map[string]uint64{},
		Drops:           map[string]uint64{},
		DeliveredUplink: up - d0[0],
		DeliveredInside: in - d0[1],
		Notes:           r.notes,
	}
	res.Packets = fed
	if got := c1.Packets - c0.Packets; got != fed {
		res.Notes = append(res.Notes, fmt.Sprintf("the switch counted %d packets, the harness fed %d", got, fed))
	}
	for k, v := range c1.Drops {
		if d := v - c0.Drops[k]; d != 0 {
			res.Drops[k] = d
		}
	}
	for k, v := range r.harness {
		n := v * uint64(r.o.Loop)
		res.Drops[k] += n
		res.Dropped += n
		res.Packets += n
	}
	res.Verdicts["forwarded"] = res.Forwarded
	res.Verdicts["local"] = res.Local
	var sum uint64
	for k, v := range res.Drops {
		res.Verdicts[k] += v
	}
	for _, v := range res.Verdicts {
		sum += v
	}
	if sum != res.Packets {
		res.Notes = append(res.Notes, fmt.Sprintf("switch verdicts (%d) do not add up to the packets (%d)", sum, res.Packets))
	}
	if res.Packets > 0 && busy > 0 {
		res.PPS = float64(res.Packets) / busy.Seconds()
		res.NsPerPkt = float64(busy.Nanoseconds()) / float64(res.Packets)
		res.Allocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(res.Packets)
	}
	return res
}

func (r *Replayer) delivered() (uplink, inside uint64) {
	for i, s := range r.sinks {
		if i == 0 {
			uplink += s.Frames.Load()
		} else {
			inside += s.Frames.Load()
		}
	}
	return
}

// batch feeds one batch and returns the time Process took.
func (r *Replayer) batch(b batch, shift int64) time.Duration {
	n := int(b.end - b.start)
	bufs := r.bufs[:n]
	for i := range bufs {
		j := int(b.start) + i
		f := &bufs[i]
		f.Off = tap.Headroom
		f.Len = copy(f.Buf[tap.Headroom:], r.frames[j])
		f.GSO = tap.GSO{}
		if r.meta[j].kind == metaPATIn {
			r.patIn(f.Buf[tap.Headroom+int(r.meta[j].l3) : tap.Headroom+f.Len])
		}
	}
	r.now.Store(r.times[b.start] + shift)
	t0 := time.Now()
	r.sw.Process(r.ports[b.port], bufs)
	d := time.Since(t0)
	if b.learn {
		for i := range bufs {
			if j := int(b.start) + i; r.meta[j].kind == metaLearn {
				r.learn(r.frames[j][r.meta[j].l3:], &bufs[i])
			}
		}
	}
	return d
}

// learn records the PAT mapping of an outbound packet (orig, as captured)
// from its translation (f, after Process).
func (r *Replayer) learn(orig []byte, f *tap.Frame) {
	k, off, ok := outboundKey(orig)
	if !ok {
		return
	}
	t := f.Bytes()
	l3, ok := ipv4Off(t)
	if !ok || len(t) < l3+off+2 || [4]byte(t[l3+12:l3+16]) != r.pub {
		return // dropped, or not translated
	}
	r.learned[k] = binary.BigEndian.Uint16(t[l3+off:])
}

// patIn rewrites an inbound packet captured behind the NAT to the public IP
// and the learned PAT port of its private endpoint.
func (r *Replayer) patIn(ip []byte) {
	port := -1
	if k, ok := inboundKey(ip); ok {
		if p, ok := r.learned[k]; ok {
			port = int(p)
		}
	}
	rewriteInbound(ip, r.pub, port)
}
