package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"roam/internal/netlab"
)

// TestPrivilegedReassignTenThousandFlows: 10,000 UDP flows from the
// outside to a record's public IP (100 client sockets times 100 ports),
// answered by vmA; the record moves to vmB. `roamctl conntrack list --eni`
// shows the same 10,000 flows with the same translations before and after
// the reassign; every flow is then answered by vmB from the same public
// address and port, and the table holds no new flow.
func TestPrivilegedReassignTenThousandFlows(t *testing.T) {
	const (
		clients  = 100
		ports    = 100
		basePort = 20000
	)
	w := newLab(t)
	p, err := w.SetupPair(netlab.PairOptions{Ingress: [][]string{
		{"--protocol", "udp", "--port", fmt.Sprintf("%d-%d", basePort, basePort+ports-1)},
	}})
	must(t, err)
	for vm, tag := range map[string]byte{"vma": 'A', "vmb": 'B'} {
		for i := 0; i < ports; i++ {
			c, err := w.ListenUDP(vm, fmt.Sprintf("%s:%d", p.IP, basePort+i))
			must(t, err)
			e := netlab.ServeUDPEcho(c, tag)
			t.Cleanup(e.Close)
		}
	}
	socks := make([]*net.UDPConn, clients)
	for i := range socks {
		socks[i], err = w.ListenUDP("pub", netlab.PubIP+":0")
		must(t, err)
		defer socks[i].Close()
	}
	eip := netip.MustParseAddr(netlab.EIP)

	// round sends one datagram on every flow until each is answered (at
	// most 5 tries) and checks every answer: from the public IP and port
	// the datagram went to, by the echo tagged want.
	round := func(want byte) {
		t.Helper()
		var mu sync.Mutex
		var problems []string
		answered := 0
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for ci, c := range socks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				got := make([]bool, ports)
				n := 0
				buf := make([]byte, 64)
				for try := 0; try < 5 && n < ports; try++ {
					for i := 0; i < ports; i++ {
						if got[i] {
							continue
						}
						binary.BigEndian.PutUint64(buf, uint64(ci*ports+i))
						buf[8] = 0
						c.WriteToUDPAddrPort(buf[:9], netip.AddrPortFrom(eip, uint16(basePort+i)))
					}
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					for n < ports {
						m, from, err := c.ReadFromUDPAddrPort(buf)
						if err != nil {
							break
						}
						if m < 9 {
							continue
						}
						seq := int(binary.BigEndian.Uint64(buf))
						i := seq - ci*ports
						if i < 0 || i >= ports {
							continue
						}
						if from != netip.AddrPortFrom(eip, uint16(basePort+i)) || buf[8] != want {
							mu.Lock()
							problems = append(problems, fmt.Sprintf("client %d flow to port %d: answer from %v by %q, want from %v by %q",
								ci, basePort+i, from, buf[8], netip.AddrPortFrom(eip, uint16(basePort+i)), want))
							mu.Unlock()
						}
						if !got[i] {
							got[i] = true
							n++
						}
					}
				}
				mu.Lock()
				answered += n
				mu.Unlock()
			}()
		}
		wg.Wait()
		if answered != clients*ports {
			t.Errorf("%d of %d flows answered", answered, clients*ports)
		}
		if len(problems) > 0 {
			t.Errorf("%d wrong answers, e.g. %s", len(problems), strings.Join(problems[:min(5, len(problems))], "; "))
		}
	}
	// table returns the record's UDP flows to the public IP's ports,
	// keyed by original tuple, valued by translation.
	table := func() map[string]string {
		t.Helper()
		flows, err := w.Flows(p.ENI.ID)
		must(t, err)
		m := map[string]string{}
		for _, f := range flows {
			if f.Proto == "udp" && strings.HasPrefix(f.OrigDst, netlab.EIP+":") {
				m[f.OrigSrc+" > "+f.OrigDst] = f.ReplySrc + " > " + f.ReplyDst
			}
		}
		return m
	}
	same := func(what string, a, b map[string]string) {
		t.Helper()
		if len(a) != len(b) {
			t.Errorf("%s: %d flows, want %d", what, len(b), len(a))
		}
		bad := 0
		for k, v := range a {
			if b[k] != v {
				if bad < 3 {
					t.Errorf("%s: flow %s translated %q, want %q", what, k, b[k], v)
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d flows missing or translated differently", what, bad)
		}
	}

	round('A')
	before := table()
	if len(before) != clients*ports {
		t.Fatalf("conntrack list --eni %s: %d flows to the public IP, want %d", p.ENI.ID, len(before), clients*ports)
	}
	for k, v := range before {
		if !strings.HasPrefix(v, p.IP+":") {
			t.Fatalf("flow %s translated to %s, want to %s", k, v, p.IP)
		}
		break
	}
	t0 := time.Now()
	must(t, p.Reassign("vmb"))
	took := time.Since(t0)
	same("after the reassign", before, table())
	round('B')
	same("after vmB answered every flow", before, table())
	t.Logf("10K flows: reassign with %d tracked flows took %v (roamctl included); all still tracked, translated the same way, answered by vmB", len(before), took.Round(time.Microsecond))
}
