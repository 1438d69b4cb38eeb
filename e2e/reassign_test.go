package e2e

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"roam/internal/netlab"
)

// TestPrivilegedReassignUnderLoad: a UDP stream with sequence numbers from
// pub to the record's public IP, answered by vmA; `roamctl eni reassign`
// moves the record to vmB, which holds the same IP as a standby. The
// client keeps talking to the same public address and port (its socket is
// connected to it), no datagram is lost on the way in, the only answers
// lost are those vmA had received and not yet answered through roam at
// the swap (in flight; counted), and vmA receives nothing sent after the
// reassign returned.
func TestPrivilegedReassignUnderLoad(t *testing.T) {
	const (
		port   = 9200
		rate   = 2000 // datagrams per second
		before = 1500 * time.Millisecond
		after  = 1500 * time.Millisecond
	)
	w := newLab(t)
	p, err := w.SetupPair(netlab.PairOptions{})
	must(t, err)
	echo := map[string]*netlab.UDPEcho{}
	for vm, tag := range map[string]byte{"vma": 'A', "vmb": 'B'} {
		c, err := w.ListenUDP(vm, fmt.Sprintf("%s:%d", p.IP, port))
		must(t, err)
		echo[vm] = netlab.ServeUDPEcho(c, tag)
		t.Cleanup(echo[vm].Close)
	}
	c, err := w.DialUDP("pub", netlab.EIPAddr(port))
	must(t, err)
	kBefore, rBefore := drops(t, w)
	stream := netlab.StartUDPStream(c, rate, 64)
	time.Sleep(before)
	atStart := stream.Sent()
	t0 := time.Now()
	if err := p.Reassign("vmb"); err != nil {
		stream.Stop(0)
		t.Fatal(err)
	}
	took := time.Since(t0)
	atReturn := stream.Sent()
	time.Sleep(after)
	answers := stream.Stop(300 * time.Millisecond)
	sent := stream.Sent()

	kAfter, rAfter := drops(t, w)
	kernel, roam := diff(kBefore, kAfter), diff(rBefore, rAfter)
	t.Logf("drops during the stream: by the kernels %v, by roam %v", kernel, roam)
	seqA, seqB := echo["vma"].Seqs(), echo["vmb"].Seqs()
	var lostIn, inflight, lostFromB []uint64
	var aAfter []uint64
	for seq := uint64(0); seq < sent; seq++ {
		_, answered := answers[seq]
		switch {
		case seqA[seq] && seq >= atReturn:
			aAfter = append(aAfter, seq)
		}
		if answered {
			continue
		}
		switch {
		case seqA[seq]:
			inflight = append(inflight, seq)
		case seqB[seq]:
			lostFromB = append(lostFromB, seq)
		default:
			lostIn = append(lostIn, seq)
		}
	}
	perTag := stream.PerTag()
	t.Logf("reassign under load: %d datagrams at %d/s, reassign took %v (sent %d..%d during it); answered by vmA %d, by vmB %d; lost %d: %d in flight at the swap (vmA got them, its answers arrived after the swap) %v, %d lost on the way in, %d answers of vmB lost",
		sent, rate, took.Round(time.Microsecond), atStart, atReturn, perTag['A'], perTag['B'],
		int(sent)-len(answers), len(inflight), inflight, len(lostIn), len(lostFromB))
	if perTag['A'] == 0 || perTag['B'] == 0 {
		t.Errorf("answers by vmA %d, by vmB %d: want both (the stream moved)", perTag['A'], perTag['B'])
	}
	// Every lost datagram is accounted for: roam dropped only vmA's
	// answers that reached it after the swap (in flight), and whatever
	// else was lost, a kernel says it dropped (a receiver starved of CPU
	// on a busy machine overflows its socket buffer).
	var roamDropped, kernelDropped uint64
	for _, v := range roam {
		roamDropped += v
	}
	for k, v := range kernel {
		if !strings.HasSuffix(k, "udp_RcvbufErrors") { // counted in InErrors too
			kernelDropped += v
		}
	}
	if roamDropped > uint64(len(inflight)) {
		t.Errorf("roam dropped %d frames %v; only the %d answers vmA sent after the swap may be", roamDropped, roam, len(inflight))
	}
	if n := uint64(len(lostIn) + len(lostFromB)); n > kernelDropped {
		t.Errorf("%d datagrams reached neither VM %v and %d answers of vmB were lost %v, but the kernels dropped only %d",
			len(lostIn), head(lostIn), len(lostFromB), head(lostFromB), kernelDropped)
	}
	if lost := sent - uint64(len(answers)); lost > roamDropped+kernelDropped {
		t.Errorf("%d datagrams lost, but roam dropped %d and the kernels %d", lost, roamDropped, kernelDropped)
	}
	for _, seq := range inflight {
		if seq >= atReturn {
			t.Errorf("datagram %d sent after the reassign returned (at %d) reached vmA and was lost", seq, atReturn)
		}
	}
	if len(aAfter) > 0 {
		t.Errorf("vmA received %d datagrams sent after the reassign returned: %v", len(aAfter), head(aAfter))
	}
	// The record keeps its public address: vmB saw the client's own
	// address and port (1:1 NAT keeps the source), as vmA did.
	for vm, e := range echo {
		peers := e.Peers()
		if len(peers) != 1 || peers[c.LocalAddr().String()] == 0 {
			t.Errorf("%s saw peers %v, want only the client %v", vm, peers, c.LocalAddr())
		}
	}
}

// drops returns the kernel's drop counters of every namespace of w and
// roam's drop counters by reason.
func drops(t *testing.T, w *netlab.Lab) (kernel, roam map[string]uint64) {
	t.Helper()
	kernel = map[string]uint64{}
	for _, ns := range []string{"pub", "vma", "vmb"} {
		m, err := w.KernelDrops(ns)
		must(t, err)
		for k, v := range m {
			kernel[ns+"/"+k] = v
		}
	}
	st, err := w.Stats("")
	must(t, err)
	return kernel, st.Drops
}

// diff returns the counters that grew from a to b, by how much.
func diff(a, b map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range b {
		if v > a[k] {
			d[k] = v - a[k]
		}
	}
	return d
}

func head(s []uint64) []uint64 {
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

// TestPrivilegedTCPSurvivesReassign: a TCP connection from pub to the
// record's public IP, served by vmA, is moved to vmB at the moment of the
// reassign by migrating its socket with TCP_REPAIR (test code, as CRIU
// does). roam's conntrack and NAT carry the connection across: the
// client's connection carries on without a reset, and the bytes before
// and after the move, both ways, arrive intact and in order.
func TestPrivilegedTCPSurvivesReassign(t *testing.T) {
	const (
		port = 9300
		rate = 0 // the download goes as fast as it can: the send queue is full at the move
		msg  = 64 << 10
		up   = int64(1) << 40 // pattern offset of the client's uploads
	)
	w := newLab(t)
	p, err := w.SetupPair(netlab.PairOptions{})
	must(t, err)
	l, err := w.ListenTCP("vma", fmt.Sprintf("%s:%d", p.IP, port))
	must(t, err)
	defer l.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, err := l.AcceptTCP()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := w.DialTCP("pub", netlab.EIPAddr(port), 5*time.Second)
	must(t, err)
	defer client.Close()
	var server *net.TCPConn
	select {
	case server = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("vmA accepted no connection")
	}
	if server == nil {
		t.Fatal("accept failed")
	}
	if got, want := server.RemoteAddr().String(), client.LocalAddr().String(); got != want {
		t.Errorf("vmA sees the client as %s, want %s (1:1 NAT keeps the source)", got, want)
	}
	// Before: the client uploads, vmA checks.
	must(t, netlab.WritePattern(client, up, msg))
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	must(t, netlab.ReadPattern(server, up, msg))

	sender := netlab.StartSender(server, rate)
	recv := netlab.StartReceiver(client)
	defer recv.Close()
	waitBytes(t, recv, 1<<20)
	// The client stops reading for a moment so that the connection is
	// moved with bytes in flight and bytes not yet sent in its queue.
	recv.Pause()
	time.Sleep(100 * time.Millisecond)
	var st *netlab.TCPState
	movedAt := recv.Got()
	t0 := time.Now()
	err = sender.Move(func(old *net.TCPConn) (*net.TCPConn, error) {
		nc, s, err := netlab.Migrate(old, w.NS("vmb"), func() error { return p.Reassign("vmb") })
		st = s
		return nc, err
	})
	took := time.Since(t0)
	recv.Resume()
	must(t, err)
	diagnose := func(what string, err error) {
		t.Helper()
		for _, ns := range []string{"pub", "vmb"} {
			out, _ := w.Run(ns, "ss", "-tinoe")
			t.Logf("%s: ss -tinoe:\n%s", ns, out)
		}
		rs, _ := w.Stats("")
		t.Logf("roam: %+v", rs)
		flows, _ := w.Flows("")
		t.Logf("flows: %+v", flows)
		t.Fatalf("%s: %v; state at the move: %+v", what, err, st)
	}
	if err := waitBytesErr(recv, movedAt+2<<20); err != nil {
		diagnose("download after the move", err)
	}
	// After: the client uploads again; the connection, now in vmB, checks.
	must(t, netlab.WritePattern(client, up+msg, msg))
	nc := sender.Conn()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := netlab.ReadPattern(nc, up+msg, msg); err != nil {
		diagnose("upload after the move", err)
	}
	if err := sender.Stop(); err != nil {
		t.Errorf("the download stopped: %v", err)
	}
	if err := recv.Err(); err != nil {
		t.Errorf("the client's connection failed: %v", err)
	}
	t.Logf("TCP survives: moved at %d bytes received (%v) in %v; %d bytes downloaded intact, %d uploaded each side of the move",
		movedAt, st, took.Round(time.Microsecond), recv.Got(), msg)
	flows, err := w.Flows(p.ENI.ID)
	must(t, err)
	n := 0
	for _, f := range flows {
		if f.Proto == "tcp" && f.OrigSrc == client.LocalAddr().String() {
			n++
			if !strings.EqualFold(f.State, "established") {
				t.Errorf("the moved connection's flow: state %q, want established", f.State)
			}
		}
	}
	if n != 1 {
		t.Errorf("flows of the client's connection after the move: %d, want 1: %+v", n, flows)
	}
}

// waitBytesErr waits (at most 20 s) for the receiver to have n bytes.
func waitBytesErr(r *netlab.Receiver, n int64) error {
	deadline := time.Now().Add(20 * time.Second)
	for r.Got() < n {
		if err := r.Err(); err != nil {
			return fmt.Errorf("receiver stopped at %d bytes (want %d): %w", r.Got(), n, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("receiver has %d bytes after 20 s, want %d", r.Got(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// waitBytes waits (at most 20 s) for the receiver to have n bytes.
func waitBytes(t *testing.T, r *netlab.Receiver, n int64) {
	t.Helper()
	if err := waitBytesErr(r, n); err != nil {
		t.Fatal(err)
	}
}
