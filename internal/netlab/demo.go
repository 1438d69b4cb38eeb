package netlab

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// DemoConfig shapes the live demo.
type DemoConfig struct {
	Config
	Rate     int           // UDP datagrams per second (default 1000)
	TCPRate  int           // bytes per second of the TCP download (default 4 MB/s)
	Before   time.Duration // how long the traffic runs before the reassign (default 4 s)
	After    time.Duration // and after it (default 4 s)
	Interval time.Duration // between two status lines (default 500 ms)
	Flows    int           // idle UDP flows opened before the reassign and checked after it (default 1000)
}

// Demo runs the live demo of roam's main promise and writes what happens,
// as it happens, to out: it builds namespaces (two VMs and an outside
// client), starts roamd, creates through roamctl a subnet, a security
// group, a record with a public IP attached to vmA, runs a UDP stream and
// a TCP download from the outside to the public IP, moves the record to
// vmB while they run (and the TCP connection with it, by TCP_REPAIR, as a
// live migration would), prints which VM answers, the packets lost and the
// flows kept, and tears everything down, also when ctx is cancelled
// (Ctrl-C) or a step fails.
func Demo(ctx context.Context, out io.Writer, cfg DemoConfig) (err error) {
	if cfg.Rate <= 0 {
		cfg.Rate = 1000
	}
	if cfg.TCPRate <= 0 {
		cfg.TCPRate = 4 << 20
	}
	if cfg.Before <= 0 {
		cfg.Before = 4 * time.Second
	}
	if cfg.After <= 0 {
		cfg.After = 4 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.Flows < 0 {
		cfg.Flows = 0
	} else if cfg.Flows == 0 {
		cfg.Flows = 1000
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	if cfg.Trace == nil {
		cfg.Trace = roamctlOnly(out)
	}
	w, err := New(cfg.Config)
	if err != nil {
		return err
	}
	defer func() {
		say("== tearing down: roamd stopped, namespaces %s* deleted", w.Prefix())
		keep := err != nil && ctx.Err() == nil // a failure, not Ctrl-C
		if cerr := w.Close(keep); cerr != nil && err == nil {
			err = cerr
		}
		if keep {
			say("   (roamd's log kept in %s)", w.Dir)
		}
	}()
	// Cancellation stops roamd and the children at once; the deferred
	// Close then removes the rest.
	stop := context.AfterFunc(ctx, func() {
		if p := w.Roamd(); p != nil {
			p.Stop()
		}
	})
	defer stop()
	alive := func() error {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		return nil
	}

	say("== building the world: namespaces %[1]spub (the outside, %[2]s), %[1]svma and %[1]svmb (two VMs); roamd with its uplink in pub", w.Prefix(), PubIP)
	p, err := w.SetupPair(PairOptions{})
	if err != nil {
		return err
	}
	if err := alive(); err != nil {
		return err
	}
	say("== the record %s (%s, MAC %s) is attached to vmA and has the public IP %s; vmB holds %s too, as a standby", p.ENI.ID, p.IP, p.ENI.MAC, EIP, p.IP)

	const udpPort, tcpPort = 9000, 9300
	echo := map[byte]*UDPEcho{}
	for vm, tag := range map[string]byte{"vma": 'A', "vmb": 'B'} {
		c, err := w.ListenUDP(vm, fmt.Sprintf("%s:%d", p.IP, udpPort))
		if err != nil {
			return err
		}
		echo[tag] = ServeUDPEcho(c, tag)
		defer echo[tag].Close()
	}
	l, err := w.ListenTCP("vma", fmt.Sprintf("%s:%d", p.IP, tcpPort))
	if err != nil {
		return err
	}
	defer l.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		if c, err := l.AcceptTCP(); err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err := w.DialTCP("pub", EIPAddr(tcpPort), 5*time.Second)
	if err != nil {
		return err
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		return fmt.Errorf("vmA accepted no TCP connection")
	}
	sender := StartSender(server, cfg.TCPRate)
	defer sender.Stop()
	recv := StartReceiver(client)
	defer recv.Close()
	uc, err := w.DialUDP("pub", EIPAddr(udpPort))
	if err != nil {
		return err
	}
	stream := StartUDPStream(uc, cfg.Rate, 64)
	streamStopped := false
	defer func() {
		if !streamStopped {
			stream.Stop(0)
		}
	}()
	say("== traffic from pub to %s: UDP %d datagrams/s to port %d (numbered; each VM answers with its name), and a TCP download from port %d",
		EIP, cfg.Rate, udpPort, tcpPort)
	idle, err := openIdleFlows(w, cfg.Flows, udpPort)
	if err != nil {
		return err
	}
	defer idle.close()
	say("== and %d more UDP flows from %d other client ports, answered once by vmA, then left idle", cfg.Flows, cfg.Flows)
	say("   time   UDP answered by   lost   |  TCP received (intact)  |  flows tracked for the record")

	start := time.Now()
	var last struct {
		sent    uint64
		answers int64
		perTag  map[byte]int64
		bytes   int64
		at      time.Time
	}
	last.perTag, last.at = map[byte]int64{}, start
	var mu sync.Mutex
	status := func(note string) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		sent, per, got := stream.Sent(), stream.PerTag(), recv.Got()
		var who []string
		for _, tag := range []byte{'A', 'B'} {
			if n := per[tag] - last.perTag[tag]; n > 0 {
				who = append(who, fmt.Sprintf("vm%c %4d", tag, n))
			}
		}
		if len(who) == 0 {
			who = []string{"nobody"}
		}
		// Lost: datagrams sent before the previous line that have no
		// answer (the newer ones may still be on their way).
		lost := stream.Unanswered(last.sent)
		flows := "?"
		if st, err := w.Stats(p.ENI.ID); err == nil {
			flows = fmt.Sprint(st.Flows)
		}
		rate := float64(got-last.bytes) / now.Sub(last.at).Seconds() / (1 << 20)
		say("  %5.1fs  %-18s %4d   |  %6.1f MB  %5.1f MB/s    |  %s  %s",
			now.Sub(start).Seconds(), strings.Join(who, " "), lost, float64(got)/(1<<20), rate, flows, note)
		last.sent, last.bytes, last.at = sent, got, now
		for k, v := range per {
			last.perTag[k] = v
		}
	}
	tick := func(d time.Duration) error {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			select {
			case <-ctx.Done():
				return alive()
			case <-time.After(min(cfg.Interval, time.Until(end))):
			}
			if err := recv.Err(); err != nil {
				return fmt.Errorf("the TCP download failed: %w", err)
			}
			status("")
		}
		return nil
	}
	if err := tick(cfg.Before); err != nil {
		return err
	}

	flowsBefore, err := w.Flows(p.ENI.ID)
	if err != nil {
		return err
	}
	say("== roamctl eni reassign %s --instance vmb   (the TCP connection moves with it: TCP_REPAIR, as CRIU does)", p.ENI.ID)
	sentAtSwap := stream.Sent()
	t0 := time.Now()
	var state *TCPState
	err = sender.Move(func(old *net.TCPConn) (*net.TCPConn, error) {
		nc, st, err := Migrate(old, w.NS("vmb"), func() error { return p.Reassign("vmb") })
		state = st
		return nc, err
	})
	if err != nil {
		return err
	}
	took := time.Since(t0)
	sentAfterSwap := stream.Sent()
	flowsAfter, err := w.Flows(p.ENI.ID)
	if err != nil {
		return err
	}
	say("   done in %v: %d flows tracked before, %d after; the TCP connection moved with %d bytes queued",
		took.Round(time.Millisecond), len(flowsBefore), len(flowsAfter), len(state.SndQueue))
	if err := tick(cfg.After); err != nil {
		return err
	}

	idleB, idleOther := idle.ask('B')
	answers := stream.Stop(300 * time.Millisecond)
	streamStopped = true
	sent := stream.Sent()
	per := map[byte]int{}
	for _, tag := range answers {
		per[tag]++
	}
	seqA := echo['A'].Seqs()
	inFlight, lostElsewhere := 0, 0
	for seq := uint64(0); seq < sent; seq++ {
		if _, ok := answers[seq]; ok {
			continue
		}
		if seqA[seq] && seq < sentAfterSwap {
			inFlight++
		} else {
			lostElsewhere++
		}
	}
	aAfter := 0 // datagrams sent after the reassign returned that reached vmA
	for seq := range seqA {
		if seq >= sentAfterSwap && seq < sent {
			aAfter++
		}
	}
	flowsEnd, _ := w.Flows(p.ENI.ID)
	if err := sender.Stop(); err != nil {
		return fmt.Errorf("the TCP download failed: %w", err)
	}
	time.Sleep(200 * time.Millisecond)
	tcpErr := recv.Err()
	say("== summary")
	say("   UDP: %d datagrams sent (%d when the reassign started), answered by vmA %d, by vmB %d", sent, sentAtSwap, per['A'], per['B'])
	say("        lost %d: %d in flight at the swap (vmA had them; its answers reached roam after the swap), %d elsewhere", int(sent)-len(answers), inFlight, lostElsewhere)
	say("        vmA received %d of the datagrams sent after the reassign returned", aAfter)
	if tcpErr == nil {
		say("   TCP: the same connection, never reset: %.1f MB received, every byte checked", float64(recv.Got())/(1<<20))
	} else {
		say("   TCP: the connection failed: %v", tcpErr)
	}
	say("   flows tracked for the record: %d before the reassign, %d right after, %d at the end", len(flowsBefore), len(flowsAfter), len(flowsEnd))
	say("   the %d idle flows, asked again after the move: %d answered by vmB from the same public address and port, %d otherwise", cfg.Flows, idleB, idleOther)
	if tcpErr != nil {
		return tcpErr
	}
	return nil
}

// idleFlows are UDP flows from as many client sockets in pub to the public
// IP: each has been answered once.
type idleFlows struct {
	socks []*net.UDPConn
	dst   *net.UDPAddr
}

func openIdleFlows(w *Lab, n, port int) (*idleFlows, error) {
	f := &idleFlows{dst: &net.UDPAddr{IP: net.ParseIP(EIP), Port: port}}
	for range n {
		c, err := w.ListenUDP("pub", PubIP+":0")
		if err != nil {
			f.close()
			return nil, err
		}
		f.socks = append(f.socks, c)
	}
	if _, other := f.ask('A'); other > 0 {
		f.close()
		return nil, fmt.Errorf("%d of %d idle flows got no answer from vmA", other, n)
	}
	return f, nil
}

// ask sends one datagram on every flow (up to 3 tries each) and returns
// how many were answered by the echo tagged want from the public IP and
// port they went to, and how many were not.
func (f *idleFlows) ask(want byte) (got int, other int) {
	var mu sync.Mutex
	tags := map[byte]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, c := range f.socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			buf := make([]byte, 64)
			for try := 0; try < 3; try++ {
				buf[8] = 0
				c.WriteToUDP(buf[:seqHeader], f.dst)
				c.SetReadDeadline(time.Now().Add(time.Second))
				n, from, err := c.ReadFromUDP(buf)
				if err != nil {
					continue
				}
				tag := byte('?')
				if n >= seqHeader && from.IP.Equal(f.dst.IP) && from.Port == f.dst.Port {
					tag = buf[8]
				}
				mu.Lock()
				tags[tag]++
				mu.Unlock()
				return
			}
			mu.Lock()
			tags[0]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return tags[want], len(f.socks) - tags[want]
}

func (f *idleFlows) close() {
	for _, c := range f.socks {
		c.Close()
	}
}

// roamctlOnly returns a writer for Lab.Trace that shows the roamctl
// commands that change something, the ones a user would type to build
// the world, and nothing else (the demo's own reads would flood it).
func roamctlOnly(out io.Writer) io.Writer { return traceFilter{out} }

type traceFilter struct{ out io.Writer }

func (f traceFilter) Write(b []byte) (int, error) {
	line := string(b)
	if strings.HasPrefix(line, "$ roamctl ") {
		for _, read := range []string{"stats", "conntrack list", "subnet list"} {
			if strings.HasPrefix(line, "$ roamctl "+read) {
				return len(b), nil
			}
		}
		fmt.Fprint(f.out, "  "+line)
	}
	return len(b), nil
}
