package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"roam/internal/netlab"
)

// newLab skips t unless it can create namespaces and TAP devices, and
// returns a lab with namespaces short (named with its prefix and the
// PID) that t's cleanup deletes.
func newLab(t *testing.T, short ...string) *netlab.Lab {
	t.Helper()
	if why := netlab.Missing("ip"); why != "" {
		t.Skip("skipped: " + why)
	}
	lab, err := netlab.New(netlab.Config{Prefix: netlab.UniquePrefix("rh")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(false); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, ns := range short {
		if err := lab.AddNS(ns); err != nil {
			t.Fatal(err)
		}
	}
	return lab
}

// ipCmd runs ip with args in the root namespace.
func ipCmd(t *testing.T, lab *netlab.Lab, args ...string) {
	t.Helper()
	if _, err := lab.Run("", "ip", args...); err != nil {
		t.Fatal(err)
	}
}

// inNS runs fn on an OS thread in the lab's namespace short: sockets it
// opens stay there whichever thread uses them later.
func inNS(t *testing.T, lab *netlab.Lab, short string, fn func() error) {
	t.Helper()
	if err := lab.InNS(short, fn); err != nil {
		t.Fatalf("in netns %s: %v", lab.NS(short), err)
	}
}

// tcpEcho exchanges 16-byte messages on one TCP connection.
func tcpRound(c net.Conn, i int) error {
	msg := fmt.Appendf(nil, "%016d", i)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// flowKeys lists roamctl conntrack list as comparable lines (without the
// expiry, which traffic moves on).
func flowKeys(t *testing.T, d *daemon) []string {
	t.Helper()
	r := d.ctl(0, "conntrack", "list")
	if r.code != 0 {
		t.Fatalf("conntrack list: %s%s", r.stdout, r.stderr)
	}
	var fl []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &fl); err != nil {
		t.Fatalf("conntrack list: %v\n%s", err, r.stdout)
	}
	var out []string
	for _, f := range fl {
		out = append(out, fmt.Sprintf("%v %v->%v reply %v->%v %v %v", f["proto"], f["src"], f["dst"], f["reply_src"], f["reply_dst"], f["state"], f["record"]))
	}
	sort.Strings(out)
	return out
}

// TestPrivilegedRestartKeepsFlows runs a real roamd with TAP ports: a
// guest with a public IP and a guest behind PAT each run a 1000 pkt/s UDP
// stream with sequence numbers and a TCP connection to a server on the
// public side. roamd gets SIGTERM (handover: devices kept, flows saved)
// and a new roamd starts on the same state directory. Every flow and NAT
// binding is back (conntrack before == after), the TCP connections carry
// on without a reset, and the UDP streams lose only what was sent while
// no roamd ran.
func TestPrivilegedRestartKeepsFlows(t *testing.T) {
	lab := newLab(t, "pub", "vm1", "vm2")
	pubNS, vm1NS, vm2NS := lab.NS("pub"), lab.NS("vm1"), lab.NS("vm2")
	d := newDaemon(t, "--ports", "drivers", "--uplink", "tap:up0@"+pubNS, "--log-level", "debug")
	t.Cleanup(func() {
		d.kill() // the log is read once roamd is gone (its writer is another goroutine)
		if t.Failed() {
			t.Logf("roamd log:\n%s", d.log)
		}
	})
	ipCmd(t, lab, "-n", pubNS, "addr", "add", "198.51.100.200/24", "dev", "up0")
	ipCmd(t, lab, "-n", pubNS, "link", "set", "up0", "up")
	sn := d.ok("subnet", "create", "10.0.0.0/24")
	var guests, recs [2]string
	for i, ns := range []string{vm1NS, vm2NS} {
		name := fmt.Sprintf("vm%d", i+1)
		d.ok("instance", "create", name, "--port", "tap:eth0@"+ns)
		e := d.ok("eni", "create", "--subnet", sn["id"].(string))
		d.ok("eni", "attach", e["id"].(string), "--instance", name)
		ip := e["private_ips"].([]any)[0].(string)
		guests[i], recs[i] = ip, e["id"].(string)
		ipCmd(t, lab, "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		ipCmd(t, lab, "-n", ns, "link", "set", "eth0", "up")
		ipCmd(t, lab, "-n", ns, "route", "add", "default", "via", "10.0.0.1")
		if i == 0 {
			a := d.ok("eip", "allocate")
			d.ok("eip", "associate", a["id"].(string), "--eni", e["id"].(string))
		}
	}

	// The server on the public side: UDP and TCP echo.
	var udpSrv *net.UDPConn
	var tcpLn net.Listener
	inNS(t, lab, "pub", func() (err error) {
		if udpSrv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 51, 100, 200), Port: 9000}); err != nil {
			return err
		}
		tcpLn, err = net.Listen("tcp4", "198.51.100.200:9001")
		return err
	})
	defer udpSrv.Close()
	defer tcpLn.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := udpSrv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			udpSrv.WriteToUDP(buf[:n], from)
		}
	}()
	var resets atomic.Int64
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.Copy(c, c); err != nil {
					resets.Add(1)
				}
			}()
		}
	}()

	var streams [2]*netlab.UDPStream
	streamName := [2]string{"eip", "pat"}
	var tcps [2]net.Conn
	for i, ns := range []string{"vm1", "vm2"} {
		var uc *net.UDPConn
		inNS(t, lab, ns, func() (err error) {
			if uc, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(198, 51, 100, 200), Port: 9000}); err != nil {
				return err
			}
			tcps[i], err = net.DialTimeout("tcp4", "198.51.100.200:9001", 10*time.Second)
			return err
		})
		defer uc.Close()
		defer tcps[i].Close()
		if err := tcpRound(tcps[i], 0); err != nil {
			t.Fatalf("guest %s: tcp before the restart: %v", guests[i], err)
		}
		// One datagram with a sequence number every millisecond.
		streams[i] = netlab.StartUDPStream(uc, 1000, 64)
	}
	for k := 0; k < 200 && (streams[0].Answered() < 300 || streams[1].Answered() < 300); k++ {
		time.Sleep(50 * time.Millisecond)
	}
	before := flowKeys(t, d)
	if len(before) < 4 {
		t.Fatalf("before the restart: %d flows, want at least 4 (udp and tcp of two guests):\n%s", len(before), strings.Join(before, "\n"))
	}

	// Handover: SIGTERM, then a new roamd on the same state directory.
	var outBefore [2]float64
	for i, id := range recs {
		outBefore[i] = d.ok("stats", "--eni", id)["packets_out"].(float64)
	}
	seqStop := [2]uint64{streams[0].Sent(), streams[1].Sent()}
	t0 := time.Now()
	if err := d.stop(); err != nil {
		t.Fatalf("roamd exit after SIGTERM: %v\n%s", err, d.log)
	}
	stopLog := d.log.String()
	if os.Getenv("ROAM_TEST_LOG") != "" {
		t.Logf("old roamd:\n%s", stopLog)
		defer func() { d.kill(); t.Logf("new roamd:\n%s", d.log) }()
	}
	for _, ifn := range []struct{ ns, dev string }{{pubNS, "up0"}, {vm1NS, "eth0"}, {vm2NS, "eth0"}} {
		if out, err := exec.Command("ip", "-n", ifn.ns, "-o", "addr", "show", "dev", ifn.dev).CombinedOutput(); err != nil || !strings.Contains(string(out), "inet ") {
			t.Fatalf("%s in %s after SIGTERM: %v %s; want the device kept with its address", ifn.dev, ifn.ns, err, out)
		}
	}
	d.start()
	down := time.Since(t0)
	seqReady := [2]uint64{streams[0].Sent(), streams[1].Sent()}
	// The records' counters continue where they were (issue 10, 12b).
	for i, id := range recs {
		if got := d.ok("stats", "--eni", id)["packets_out"].(float64); got < outBefore[i] {
			t.Errorf("stats --eni %s after the restart: %v packets out, want at least the %v before it", id, got, outBefore[i])
		}
	}
	for i := range tcps {
		for k := 1; k <= 20; k++ {
			if err := tcpRound(tcps[i], k); err != nil {
				t.Fatalf("guest %s: tcp round %d after the restart: %v", guests[i], k, err)
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	after := flowKeys(t, d)
	var lostN [2]int
	for i, s := range streams {
		// Stop after the last replies are in; the lost are those sent
		// before that wait.
		sent := s.Sent()
		s.Stop(300 * time.Millisecond)
		lost := s.Lost(sent)
		lostN[i] = len(lost)
		if sent < seqReady[i]+300 {
			t.Fatalf("%s stream: %d sent, want 300 after the restart", streamName[i], sent)
		}
		for _, q := range lost {
			// Bound: only datagrams sent between SIGTERM and the new
			// roamd being ready (plus the one the uplink neighbor
			// resolution costs, and a few of margin) may be lost.
			if q+5 < seqStop[i] || q > seqReady[i]+20 {
				t.Errorf("%s stream: datagram %d lost outside the restart window [%d, %d]", streamName[i], q, seqStop[i], seqReady[i])
			}
		}
	}
	if n := resets.Load(); n != 0 {
		t.Errorf("server saw %d TCP connections end with an error", n)
	}
	if strings.Join(before, "\n") != strings.Join(after, "\n") {
		t.Errorf("conntrack differs across the restart:\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
	d.kill() // done: the log can be read
	stopped := regexp.MustCompile(`stopped_for=(\S+)`).FindStringSubmatch(d.log.String())
	if stopped == nil {
		t.Errorf("new roamd did not log restored flows:\n%s", d.log)
		stopped = []string{"", "?"}
	}
	restored := regexp.MustCompile(`flows restored from the previous roamd" flows=(\d+)`).FindStringSubmatch(d.log.String())
	kept := regexp.MustCompile(`flows kept" flows=(\d+) devices_kept=(\d+)`).FindStringSubmatch(stopLog)
	if kept == nil || restored == nil || kept[1] != restored[1] {
		t.Errorf("flows saved %v, restored %v: want the same number", kept, restored)
		kept, restored = []string{"", "?", "?"}, []string{"", "?"}
	}
	t.Logf("restart: SIGTERM to ready %v; data path stopped for %s (from the snapshot's age); %s flows saved with %s devices kept, %s restored; "+
		"UDP at 1000 pkt/s lost: %d through the public IP, %d through PAT; TCP: 20 rounds each after the restart, no reset; conntrack before == after (%d flows)",
		down.Round(time.Millisecond), stopped[1], kept[1], kept[2], restored[1], lostN[0], lostN[1], len(after))
}
