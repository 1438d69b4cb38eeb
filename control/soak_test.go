package control

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roam/internal/packet/packettest"
	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/taptest"
)

// soakFlag (or ROAM_SOAK) sets how long TestSoak runs; the default keeps
// make test within its budget.
var soakFlag = flag.Duration("soak", 0, "how long TestSoak runs (default 2m, 10s with -short; env ROAM_SOAK too)")

func soakDuration(t *testing.T) time.Duration {
	if *soakFlag > 0 {
		return *soakFlag
	}
	if v := os.Getenv("ROAM_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ROAM_SOAK=%q: %v", v, err)
		}
		return d
	}
	if testing.Short() {
		return 10 * time.Second
	}
	return 2 * time.Minute
}

// soakPorts opens in-memory ports and keeps them, for the test to act as
// the guests and the outside.
type soakPorts struct {
	mu    sync.Mutex
	ports map[string]*taptest.Port
}

func (p *soakPorts) Open(spec string) (tap.Port, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := taptest.New(spec, 4096)
	p.ports[spec] = tp
	return tp, nil
}

func (p *soakPorts) all() map[string]*taptest.Port {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]*taptest.Port, len(p.ports))
	for k, v := range p.ports {
		out[k] = v
	}
	return out
}

// owner is one interval in which a port may have owned an address: from
// the start of the operation that gave it the address to the end of the
// one that took it away (to = 0 while it still does).
type owner struct {
	port     string
	from, to int64 // ns since the test's start
}

// ownership is the test's record of which port held which address when.
type ownership struct {
	mu  sync.Mutex
	ips map[netip.Addr][]owner
}

// valid reports whether a frame sent at ts and received at tr on port for
// ip could have been delivered by a switch that only delivers to the
// current owner: some interval of (ip, port) overlaps [ts, tr].
func (o *ownership) valid(ip netip.Addr, port string, ts, tr int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, iv := range o.ips[ip] {
		if iv.port == port && iv.from <= tr && (iv.to == 0 || iv.to >= ts) {
			return true
		}
	}
	return false
}

// TestSoak runs traffic through many flows (UDP out through a public IP
// and through PAT, answers back, new flows in to the public IPs) while a
// record is reassigned every 100 ms and other control operations run,
// under the race detector when make test runs it. At the end: no frame
// reached a port that did not own its destination at that moment, every
// frame the switch read is forwarded, answered, dropped (by reason) or
// held, the store and the data path agree, and goroutines and memory are
// back to their baseline. Bounded: -soak or ROAM_SOAK, default 2 minutes.
func TestSoak(t *testing.T) {
	dur := soakDuration(t)
	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }

	ports := &soakPorts{ports: map[string]*taptest.Port{}}
	sw := vswitch.New(vswitch.Options{Logger: slog.New(slog.DiscardHandler)})
	gw := Gateway{PublicCIDR: netip.MustParsePrefix("198.51.100.0/24"), PublicIP: netip.MustParseAddr("198.51.100.1"),
		Uplink: "tap:up", UpstreamMAC: net.HardwareAddr{2, 0xee, 0, 0, 0, 1}}
	s, err := Open(Options{Store: NewMemStore(), DataPath: sw, Ports: ports, Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	sw.Start()
	closed := false
	shutdown := func() {
		if !closed {
			closed = true
			s.Close()
			sw.Close()
		}
	}
	defer shutdown()

	// 8 records carry traffic over 12 instances; 4 of them have a public
	// IP, the others go out through PAT. Extra records come and go on 4
	// other instances.
	const nrec, ninst, nflows = 8, 12, 32
	sn := ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.0.0.0/24"}))
	sg := ok(s.CreateGroup(Root, CreateGroupInput{Name: "open"}))
	ok(s.AddRule(Root, sg.ID, RuleInput{Direction: "ingress", Protocol: "all", CIDR: "0.0.0.0/0"}))
	side := ok(s.CreateGroup(Root, CreateGroupInput{Name: "side"}))
	for i := 0; i < ninst; i++ {
		ok(s.CreateInstance(Root, CreateInstanceInput{Name: fmt.Sprintf("vm%d", i), Ports: []string{fmt.Sprintf("tap:v%d", i)}}))
	}
	for i := 0; i < 4; i++ {
		ok(s.CreateInstance(Root, CreateInstanceInput{Name: fmt.Sprintf("x%d", i), Ports: []string{fmt.Sprintf("tap:x%d", i)}}))
	}
	type rec struct {
		id   string
		ip   netip.Addr
		mac  net.HardwareAddr
		pub  netip.Addr // invalid: PAT
		inst int        // the instance it is attached to (the test's view)
	}
	own := &ownership{ips: map[netip.Addr][]owner{}}
	var mu sync.Mutex // guards recs[].inst and held
	recs := make([]*rec, nrec)
	held := make([]int, ninst) // instance -> record+1
	for i := range recs {
		e := ok(s.CreateENI(Root, CreateENIInput{SubnetID: sn.ID, PrivateIP: fmt.Sprintf("10.0.0.%d", 100+i), SecurityGroups: []string{sg.ID}}))
		mac, _ := net.ParseMAC(e.MAC)
		r := &rec{id: e.ID, ip: e.PrivateIP, mac: mac, inst: i}
		ok(s.Attach(Root, e.ID, AttachInput{InstanceID: fmt.Sprintf("vm%d", i)}))
		if i%2 == 0 {
			a := ok(s.Allocate(Root, AllocateInput{}))
			ok(s.Associate(Root, a.ID, AssociateInput{ENIID: e.ID}))
			r.pub = a.PublicIP
		}
		own.ips[r.ip] = []owner{{port: fmt.Sprintf("tap:v%d", i), from: 0}}
		held[i] = i + 1
		recs[i] = r
	}
	all := ports.all()
	uplink := all["tap:up"]
	gwMAC := net.HardwareAddr(vswitch.DefaultGatewayMAC)
	remote := netip.MustParseAddr("203.0.113.9")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var injected, udpOut, udpIn, violations, opsOK, reassigns atomic.Int64
	var firstViolation atomic.Pointer[string]
	// Frames are built once per flow (without a UDP checksum, so that
	// the send time can be written into each copy).
	type fkey struct {
		src, dst netip.AddrPort
	}
	var tmplMu sync.Mutex
	tmpl := map[fkey][]byte{}
	frame := func(src, dst netip.AddrPort, smac net.HardwareAddr) []byte {
		tmplMu.Lock()
		t, ok := tmpl[fkey{src, dst}]
		if !ok {
			t = packettest.Frame(packettest.Spec{Proto: 17, Src: src, Dst: dst, Payload: make([]byte, 16), NoUDPSum: true})
			copy(t[0:6], gwMAC)
			copy(t[6:12], smac)
			tmpl[fkey{src, dst}] = t
		}
		tmplMu.Unlock()
		f := append([]byte(nil), t...)
		binary.BigEndian.PutUint64(f[42:], uint64(now()))
		return f
	}
	// Public endpoints seen on the uplink, for the answers.
	var learnedMu sync.Mutex
	learned := map[netip.AddrPort]bool{}
	var learnedList []netip.AddrPort

	// Readers: every port is drained; frames to a record's address are
	// checked against the ownership record.
	for name, p := range all {
		wg.Add(1)
		go func(name string, p *taptest.Port) {
			defer wg.Done()
			for {
				f, got := p.Recv(20 * time.Millisecond)
				if !got {
					select {
					case <-stop:
						if p.Pending() == 0 {
							return
						}
					default:
					}
					continue
				}
				tr := now()
				if len(f) < 14+20+8+8 || f[12] != 0x08 || f[13] != 0 || f[23] != 17 {
					continue // ARP and the like
				}
				srcIP, _ := netip.AddrFromSlice(f[26:30])
				dstIP, _ := netip.AddrFromSlice(f[30:34])
				sport := binary.BigEndian.Uint16(f[34:36])
				ts := int64(binary.BigEndian.Uint64(f[42:50]))
				if name == "tap:up" {
					udpOut.Add(1)
					if dstIP != remote && dstIP != netip.MustParseAddr("203.0.113.10") {
						violations.Add(1)
						msg := fmt.Sprintf("uplink got a frame to %s", dstIP)
						firstViolation.CompareAndSwap(nil, &msg)
					}
					ap := netip.AddrPortFrom(srcIP, sport)
					learnedMu.Lock()
					if !learned[ap] {
						learned[ap] = true
						learnedList = append(learnedList, ap)
					}
					learnedMu.Unlock()
					continue
				}
				udpIn.Add(1)
				if !own.valid(dstIP, name, ts, tr) {
					violations.Add(1)
					msg := fmt.Sprintf("%s got a frame to %s sent at %v, received at %v", name, dstIP, time.Duration(ts), time.Duration(tr))
					firstViolation.CompareAndSwap(nil, &msg)
				}
			}
		}(name, p)
	}
	// Outbound traffic: each record sends over nflows flows from the
	// port the test believes it is on (frames from a port the record has
	// just left are dropped by the switch, and counted).
	for i, r := range recs {
		wg.Add(1)
		go func(i int, r *rec) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				port := all[fmt.Sprintf("tap:v%d", r.inst)]
				mu.Unlock()
				port.Inject(frame(netip.AddrPortFrom(r.ip, uint16(40000+rng.IntN(nflows))), netip.AddrPortFrom(remote, 53), r.mac))
				injected.Add(1)
				if k%8 == 7 {
					time.Sleep(time.Millisecond)
				}
			}
		}(i, r)
	}
	// Inbound traffic: answers to every public endpoint seen, and new
	// flows to the public IPs.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(9, 9))
		up := net.HardwareAddr{2, 0xee, 0, 0, 0, 1}
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			learnedMu.Lock()
			var dst netip.AddrPort
			if n := len(learnedList); n > 0 && k%4 != 0 {
				dst = learnedList[rng.IntN(n)]
			}
			learnedMu.Unlock()
			src := netip.AddrPortFrom(remote, 53)
			if !dst.IsValid() {
				r := recs[2*rng.IntN(nrec/2)]
				dst = netip.AddrPortFrom(r.pub, uint16(5000+rng.IntN(nflows)))
				src = netip.AddrPortFrom(netip.MustParseAddr("203.0.113.10"), uint16(7000+rng.IntN(nflows)))
			}
			uplink.Inject(frame(src, dst, up))
			injected.Add(1)
			if k%16 == 15 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	fail := func(op string, err error) {
		if errors.Is(err, ErrDataPath) {
			msg := fmt.Sprintf("%s: the data path refused a config: %v", op, err)
			firstViolation.CompareAndSwap(nil, &msg)
			violations.Add(1)
		}
	}
	// Reassign one record every 100 ms to a free instance.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(3, 4))
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			r := recs[rng.IntN(nrec)]
			mu.Lock()
			var free []int
			for i, h := range held {
				if h == 0 {
					free = append(free, i)
				}
			}
			to := free[rng.IntN(len(free))]
			from := r.inst
			own.mu.Lock()
			own.ips[r.ip] = append(own.ips[r.ip], owner{port: fmt.Sprintf("tap:v%d", to), from: now()})
			own.mu.Unlock()
			_, err := s.Reassign(Root, r.id, ReassignInput{InstanceID: fmt.Sprintf("vm%d", to)})
			end := now()
			own.mu.Lock()
			ivs := own.ips[r.ip]
			for k := range ivs {
				// The interval that lost: the old port's on success,
				// the new one's on failure.
				lost := fmt.Sprintf("tap:v%d", from)
				if err != nil {
					lost = fmt.Sprintf("tap:v%d", to)
				}
				if ivs[k].port == lost && ivs[k].to == 0 {
					ivs[k].to = end
				}
			}
			own.mu.Unlock()
			if err == nil {
				held[from], held[to], r.inst = 0, held[from], to
				reassigns.Add(1)
			} else {
				fail("reassign", err)
			}
			mu.Unlock()
		}
	}()
	// Other control operations, on records without traffic and on the
	// traffic records' descriptions and groups.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(5, 6))
		var extras []string
		var eips []string
		var rules []string
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var err error
			op := rng.IntN(9)
			switch {
			case op == 0 && len(extras) < 6:
				var e *ENI
				if e, err = s.CreateENI(Root, CreateENIInput{SubnetID: sn.ID, SecurityGroups: []string{side.ID}}); err == nil {
					extras = append(extras, e.ID)
				}
			case op == 1 && len(extras) > 0:
				_, err = s.Attach(Root, extras[rng.IntN(len(extras))], AttachInput{InstanceID: fmt.Sprintf("x%d", rng.IntN(4))})
			case op == 2 && len(extras) > 0:
				_, err = s.Detach(Root, extras[rng.IntN(len(extras))], DetachInput{})
			case op == 3 && len(extras) > 0:
				i := rng.IntN(len(extras))
				if _, err = s.DeleteENI(Root, extras[i]); err == nil {
					extras = append(extras[:i], extras[i+1:]...)
				}
			case op == 4 && len(extras) > 0:
				_, err = s.AssignIPs(Root, extras[rng.IntN(len(extras))], AssignIPsInput{Count: 1})
			case op == 5:
				d := fmt.Sprintf("soak %d", k)
				_, err = s.ModifyENI(Root, recs[rng.IntN(nrec)].id, ModifyENIInput{Description: &d})
			case op == 6:
				if len(rules) < 4 {
					var g *Group
					port := 6000 + k%1000
					if g, err = s.AddRule(Root, side.ID, RuleInput{Direction: "ingress", Protocol: "tcp", FromPort: &port, ToPort: &port, CIDR: "192.0.2.0/24"}); err == nil {
						rules = append(rules, g.Ingress[len(g.Ingress)-1].ID)
					}
				} else {
					_, err = s.RemoveRule(Root, side.ID, rules[0])
					rules = rules[1:]
				}
			case op == 7 && len(extras) > 0:
				if len(eips) < 3 {
					var a *Address
					if a, err = s.Allocate(Root, AllocateInput{}); err == nil {
						eips = append(eips, a.ID)
						_, err = s.Associate(Root, a.ID, AssociateInput{ENIID: extras[rng.IntN(len(extras))]})
					}
				} else {
					s.Disassociate(Root, eips[0])
					_, err = s.Release(Root, eips[0])
					eips = eips[1:]
				}
			case op == 8:
				_, err = s.ModifyENI(Root, recs[rng.IntN(nrec)].id, ModifyENIInput{SecurityGroups: &[]string{sg.ID, side.ID}})
				if err == nil {
					_, err = s.ModifyENI(Root, recs[rng.IntN(nrec)].id, ModifyENIInput{SecurityGroups: &[]string{sg.ID}})
				}
			default:
				continue
			}
			if err == nil {
				opsOK.Add(1)
			} else {
				fail(fmt.Sprintf("op %d", op), err)
			}
		}
	}()

	// The memory baseline is taken once every flow exists.
	warm := min(dur/10, 10*time.Second)
	time.Sleep(warm)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapAlloc
	time.Sleep(dur - warm)
	close(stop)
	wg.Wait()
	// Quiesce: every frame read and accounted for.
	var c vswitch.Counters
	for k := 0; k < 200; k++ {
		c = sw.Counters()
		if c.Packets == uint64(injected.Load()) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for name, p := range all {
		for p.Pending() > 0 {
			f, _ := p.Recv(0)
			if name != "tap:up" && len(f) > 23 && f[23] == 17 {
				udpIn.Add(1)
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	endHeap := ms.HeapAlloc

	if n := violations.Load(); n > 0 {
		t.Errorf("%d frames reached a port that did not own their destination (or a config was refused); first: %s", n, *firstViolation.Load())
	}
	if c.Packets != uint64(injected.Load()) {
		t.Errorf("switch read %d frames, %d were injected", c.Packets, injected.Load())
	}
	if got := c.Forwarded + c.Local + c.Dropped + uint64(c.Held); got != c.Packets {
		t.Errorf("frames in %d != forwarded %d + answered %d + dropped %d + held %d = %d; drops %v",
			c.Packets, c.Forwarded, c.Local, c.Dropped, c.Held, got, c.Drops)
	}
	var portDrops uint64
	for _, p := range all {
		portDrops += p.Dropped.Load()
	}
	if got := uint64(udpIn.Load()+udpOut.Load()) + portDrops; got != c.Forwarded {
		t.Errorf("frames out: %d received + %d dropped by full ports = %d, switch forwarded %d", udpIn.Load()+udpOut.Load(), portDrops, got, c.Forwarded)
	}
	if p := s.Check(); len(p) > 0 {
		t.Errorf("store and data path disagree after the soak: %v", p)
	}
	if reassigns.Load() < int64(dur/(100*time.Millisecond))/4 {
		t.Errorf("only %d reassigns in %v", reassigns.Load(), dur)
	}
	flows := sw.Conntrack().Len()
	shutdown()
	var g int
	for k := 0; k < 100; k++ {
		if g = runtime.NumGoroutine(); g <= baseGoroutines {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g > baseGoroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines: %d after the soak, %d before:\n%s", g, baseGoroutines, buf[:runtime.Stack(buf, true)])
	}
	if endHeap > baseHeap+baseHeap/2+16<<20 {
		t.Errorf("heap %d MiB after the soak, %d MiB at the baseline", endHeap>>20, baseHeap>>20)
	}
	debug.FreeOSMemory()
	t.Logf("soak %v: %d frames in (%d forwarded: %d to the uplink, %d to guests; %d dropped %v), %d reassigns, %d other operations, "+
		"%d flows at the end; heap %.1f MiB at the baseline, %.1f MiB at the end; goroutines %d before, %d after",
		dur, c.Packets, c.Forwarded, udpOut.Load(), udpIn.Load(), c.Dropped, c.Drops, reassigns.Load(), opsOK.Load(), flows,
		float64(baseHeap)/(1<<20), float64(endHeap)/(1<<20), baseGoroutines, g)
}
