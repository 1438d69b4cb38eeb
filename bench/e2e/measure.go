package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"roam/internal/netlab"
)

// Durations of each measurement; Config can shorten them.
type Durations struct {
	TCP      time.Duration // each iperf3 run
	UDP      time.Duration // the 64-byte UDP blast
	Conn     time.Duration // new connections per second
	Ping     time.Duration // ping under load
	Reassign time.Duration // the sequenced stream around a reassign
}

// ArmResult is one arm's numbers from one run. A zero value with Errors
// set means the measurement failed; the message says why.
type ArmResult struct {
	Arm          string            `json:"arm"`
	TCP1Gbps     float64           `json:"tcp_1_gbps"`
	TCP4Gbps     float64           `json:"tcp_4_gbps"`
	UDPPps       float64           `json:"udp64_pps"`
	UDPSentPps   float64           `json:"udp64_sent_pps"`
	ConnPerS     float64           `json:"conn_per_s"`
	ConnFail     int64             `json:"conn_fail"`
	PingP50MS    float64           `json:"ping_p50_ms"`
	PingP99MS    float64           `json:"ping_p99_ms"`
	PingLoss     float64           `json:"ping_loss_pct"`
	ReassignLost int64             `json:"reassign_lost"` // lost from 100 ms before the command to 500 ms after it
	StreamLost   int64             `json:"stream_lost"`   // lost elsewhere in the stream
	ReassignMS   float64           `json:"reassign_cmd_ms"`
	AAfter       int64             `json:"vma_answers_after_reassign"`
	Moved        bool              `json:"moved"` // vmB answered the stream after the reassign
	TCPSurvived  bool              `json:"tcp_survived"`
	TCPNote      string            `json:"tcp_note,omitempty"`
	Method       string            `json:"reassign_method"`
	Seq          *SeqResult        `json:"seq,omitempty"`
	ReassignAtNS int64             `json:"reassign_at_ns,omitempty"`
	ReassignEnd  int64             `json:"reassign_end_ns,omitempty"`
	Errors       map[string]string `json:"errors,omitempty"`
	Notes        []string          `json:"notes,omitempty"`
}

func (r *ArmResult) fail(what string, err error) {
	if r.Errors == nil {
		r.Errors = map[string]string{}
	}
	r.Errors[what] = err.Error()
}

// helper starts roame2e's helper name in namespace ns.
func (e *Env) helper(ns string, name string, args ...string) (*Proc, error) {
	return e.Start(ns, "", e.Self, append([]string{"helper", name}, args...)...)
}

func decode[T any](out string, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal([]byte(strings.TrimSpace(netlab.LastLine(out))), &v); err != nil {
		return nil, fmt.Errorf("helper output %q: %v", firstN(out, 200), err)
	}
	return &v, nil
}

var eipAddr = func(port int) string { return fmt.Sprintf("%s:%d", eipIP, port) }

// measureArm runs every measurement through an arm that is set up.
func measureArm(e *Env, arm Arm, d Durations) *ArmResult {
	r := &ArmResult{Arm: arm.Name(), Method: arm.ReassignMethod()}
	// Connectivity first: an arm that cannot reach vmA is not measured.
	if err := waitPing(e, 5*time.Second); err != nil {
		r.fail("connectivity", err)
		return r
	}
	iperfSrv, err := e.Start("vma", "", "iperf3", "-s", "-p", strconv.Itoa(portIperf))
	if err != nil {
		r.fail("iperf3 server", err)
		return r
	}
	time.Sleep(300 * time.Millisecond)
	for _, streams := range []int{1, 4} {
		gbps, err := iperf(e, streams, d.TCP)
		if err != nil {
			r.fail(fmt.Sprintf("tcp_%d", streams), err)
		}
		if streams == 1 {
			r.TCP1Gbps = gbps
		} else {
			r.TCP4Gbps = gbps
		}
		e.logf("%s: TCP %d stream(s): %.2f Gbit/s", arm.Name(), streams, gbps)
	}
	// Latency under load: ping every 5 ms during a one-stream iperf3 run.
	{
		load, lerr := e.Start("pub", "", "iperf3", "-c", eipIP, "-p", strconv.Itoa(portIperf), "-t",
			strconv.Itoa(int(d.Ping.Seconds()+1)), "--connect-timeout", "2000")
		if lerr != nil {
			r.fail("ping load", lerr)
		}
		time.Sleep(500 * time.Millisecond)
		count := int(d.Ping / (5 * time.Millisecond))
		out, err := e.Run("pub", "ping", "-n", "-i", "0.005", "-W", "1", "-c", strconv.Itoa(count), eipIP)
		p50, p99, loss, perr := pingStats(out)
		if perr != nil {
			r.fail("ping", fmt.Errorf("%v (%v)", perr, err))
		}
		r.PingP50MS, r.PingP99MS, r.PingLoss = p50, p99, loss
		if load != nil {
			load.Wait(d.Ping + 10*time.Second)
		}
		e.logf("%s: ping under load p50 %.3f ms p99 %.3f ms loss %.1f%%", arm.Name(), p50, p99, loss)
	}
	iperfSrv.Stop()

	// 64-byte UDP packets per second delivered.
	if sink, err := e.helper("vma", "udpsink", "-port", strconv.Itoa(portUDP), "-dur", (d.UDP + 1500*time.Millisecond).String()); err != nil {
		r.fail("udp64", err)
	} else {
		time.Sleep(300 * time.Millisecond)
		snd, serr := decode[UDPSendResult](e.Run("pub", e.Self, "helper", "udpsend", "-to", eipAddr(portUDP), "-dur", d.UDP.String(), "-size", "18"))
		got, gerr := decode[UDPSinkResult](sink.Wait(d.UDP + 10*time.Second))
		switch {
		case serr != nil:
			r.fail("udp64", serr)
		case gerr != nil:
			r.fail("udp64", gerr)
		default:
			r.UDPPps = float64(got.Packets) / snd.DurS
			r.UDPSentPps = snd.Rate
			if float64(got.Packets) < 0.5*float64(snd.Sent) {
				r.Notes = append(r.Notes, fmt.Sprintf("udp64: %d of %d delivered; vmA's UDP counters: %s", got.Packets, snd.Sent, udpCounters(e, "vma")))
			}
			e.logf("%s: UDP 64-byte: sent %.0f pkt/s, delivered %.0f pkt/s", arm.Name(), snd.Rate, r.UDPPps)
		}
	}

	// New TCP connections per second.
	if srv, err := e.helper("vma", "connserve", "-port", strconv.Itoa(portConn), "-dur", (d.Conn + 5*time.Second).String()); err != nil {
		r.fail("conn", err)
	} else {
		time.Sleep(300 * time.Millisecond)
		res, err := decode[ConnResult](e.Run("pub", e.Self, "helper", "connclient", "-to", eipAddr(portConn), "-dur", d.Conn.String(), "-workers", "8"))
		if err != nil {
			r.fail("conn", err)
		} else {
			r.ConnPerS, r.ConnFail = res.Rate, res.Fail
			if res.Fail > 0 {
				r.Notes = append(r.Notes, fmt.Sprintf("conn: %d of %d attempts failed: %s", res.Fail, res.Fail+res.OK, res.Error))
			}
			if res.OK == 0 {
				r.fail("conn", fmt.Errorf("no connection completed: %s", res.Error))
			}
			e.logf("%s: new TCP connections: %.0f/s (%d failed)", arm.Name(), res.Rate, res.Fail)
		}
		srv.Stop()
	}

	measureReassign(e, arm, d, r)
	return r
}

func waitPing(e *Env, d time.Duration) error {
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if _, err = e.Run("pub", "ping", "-n", "-c", "1", "-W", "1", eipIP); err == nil {
			return nil
		}
	}
	return fmt.Errorf("no ping answer from %s through the arm in %v: %v", eipIP, d, err)
}

// iperf runs a TCP test from pub to the public IP and returns the receiver's
// rate in Gbit/s.
func iperf(e *Env, streams int, d time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+15*time.Second)
	defer cancel()
	out, err := e.RunCtx(ctx, "pub", "", "iperf3", "-c", eipIP, "-p", strconv.Itoa(portIperf), "-J",
		"-t", strconv.Itoa(int(d.Seconds())), "-O", "1", "-P", strconv.Itoa(streams), "--connect-timeout", "2000")
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		if err == nil {
			err = jerr
		}
		return 0, err
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, err
}

var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)
var pingLoss = regexp.MustCompile(`([0-9.]+)% packet loss`)

// pingStats returns the median and 99th percentile of ping's round trips
// and the loss in percent.
func pingStats(out string) (p50, p99, loss float64, err error) {
	var rtts []float64
	for _, m := range pingTime.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		rtts = append(rtts, v)
	}
	if m := pingLoss.FindStringSubmatch(out); m != nil {
		loss, _ = strconv.ParseFloat(m[1], 64)
	}
	if len(rtts) == 0 {
		return 0, 0, loss, fmt.Errorf("no ping answers")
	}
	sort.Float64s(rtts)
	return quantile(rtts, 0.5), quantile(rtts, 0.99), loss, nil
}

// quantile of sorted values, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// measureReassign streams sequenced UDP at 2000 pkt/s from pub to the public
// IP, answered by whichever VM receives it, keeps a TCP connection echoing
// through the public IP, and halfway through moves the IP to vmB. The TCP
// connection's socket is moved to vmB with TCP_REPAIR just before (the
// guest's part of a migration); whether it carries on depends on the gateway.
func measureReassign(e *Env, arm Arm, d Durations, r *ArmResult) {
	bound := (d.Reassign + 5*time.Second).String()
	echoA, err := e.helper("vma", "seqecho", "-port", strconv.Itoa(portSeq), "-id", "A", "-dur", bound)
	if err != nil {
		r.fail("reassign", err)
		return
	}
	echoB, err := e.helper("vmb", "seqecho", "-port", strconv.Itoa(portSeq), "-id", "B", "-dur", bound)
	if err != nil {
		r.fail("reassign", err)
		return
	}
	tcpA, err := e.StartPiped("vma", e.Self, "helper", "tcpecho", "-port", strconv.Itoa(portTCP), "-dur", bound)
	if err != nil {
		r.fail("reassign", err)
		return
	}
	if l, err := tcpA.Line(5 * time.Second); err != nil || l != "listening" {
		r.fail("tcp survive", fmt.Errorf("tcpecho: %q %v", l, err))
	}
	time.Sleep(200 * time.Millisecond)
	tcpC, err := e.helper("pub", "tcpclient", "-to", eipAddr(portTCP), "-dur", d.Reassign.String())
	if err != nil {
		r.fail("tcp survive", err)
	}
	seq, err := e.helper("pub", "seqsend", "-to", eipAddr(portSeq), "-rate", "2000", "-dur", d.Reassign.String())
	if err != nil {
		r.fail("reassign", err)
		return
	}
	time.Sleep(d.Reassign / 2)

	// The guest side of the move: stop vmA's socket from talking (as CRIU
	// does), dump it, recreate it in vmB. Then the gateway's reassign.
	var tcpB *Proc
	if err := e.Sh("vma", fmt.Sprintf(`nft -f - <<EOF
table inet rbmig {
	chain in { type filter hook input priority -10; tcp dport %[1]d drop; }
	chain out { type filter hook output priority -10; tcp sport %[1]d drop; }
}
EOF`, portTCP)); err != nil {
		r.fail("tcp survive", err)
	} else {
		time.Sleep(30 * time.Millisecond)
		tcpA.Send("dump")
		st, err := tcpA.Line(3 * time.Second)
		if err == nil && strings.HasPrefix(st, `{"error"`) {
			err = fmt.Errorf("dump: %s", st)
		}
		if err != nil {
			r.fail("tcp survive", err)
		} else if tcpB, err = e.StartPiped("vmb", e.Self, "helper", "tcprestore", "-local", arm.VMBAddr(), "-dur", bound); err != nil {
			r.fail("tcp survive", err)
		} else {
			tcpB.Send(st)
			if l, err := tcpB.Line(3 * time.Second); err != nil || l != "thawed" {
				r.fail("tcp survive", fmt.Errorf("restore in vmB: %q %v", l, err))
				tcpB.Stop()
				tcpB = nil
			}
		}
	}
	// An arm that counts its drops by reason reports those of the reassign
	// test (the stream, the TCP connection and the move).
	dropper, _ := arm.(interface {
		Drops(*Env) (map[string]int64, error)
	})
	var before map[string]int64
	if dropper != nil {
		before, _ = dropper.Drops(e)
	}
	r.ReassignAtNS = time.Now().UnixNano()
	if err := arm.Reassign(e); err != nil {
		r.fail("reassign", err)
	}
	r.ReassignEnd = time.Now().UnixNano()
	r.ReassignMS = float64(r.ReassignEnd-r.ReassignAtNS) / 1e6
	if tcpB != nil {
		// The connection's packets now reach vmB: its copy may talk.
		tcpB.Send("resume")
		if l, err := tcpB.Line(3 * time.Second); err != nil || l != "restored" {
			r.fail("tcp survive", fmt.Errorf("resume in vmB: %q %v", l, err))
		}
	}
	tcpA.Send("close")
	e.logf("%s: reassign command took %.1f ms", arm.Name(), r.ReassignMS)

	s, err := decode[SeqResult](seq.Wait(d.Reassign + 10*time.Second))
	if err != nil {
		r.fail("reassign", err)
	} else {
		r.Seq = s
		r.ReassignLost, r.StreamLost = r.SplitLost()
		// Answers from vmA to datagrams sent after the reassign finished.
		after := (r.ReassignEnd - s.StartNS) / int64(time.Millisecond) / int64(s.BinMS)
		for i, b := range s.Bins {
			if int64(i) > after {
				r.AAfter += int64(b["A"])
			}
		}
		e.logf("%s: reassign under 2000 pkt/s: sent %d, lost %d at the reassign and %d elsewhere, vmA %d, vmB %d", arm.Name(), s.Sent, r.ReassignLost, r.StreamLost, s.ByVM["A"], s.ByVM["B"])
		r.Moved = s.ByVM["B"] > 0
		if s.ByVM["B"] == 0 {
			r.Notes = append(r.Notes, "vmB never answered: the public IP did not move")
		}
	}
	if tcpC != nil {
		c, err := decode[TCPClientResult](tcpC.Wait(d.Reassign + 10*time.Second))
		if err != nil {
			r.fail("tcp survive", err)
		} else {
			r.TCPSurvived = c.Survived
			r.TCPNote = fmt.Sprintf("%d/%d echoed, longest wait %.0f ms", c.Echoed, c.Sent, c.MaxStallMS)
			if c.Error != "" {
				r.TCPNote += ", " + c.Error
			}
			e.logf("%s: TCP connection survived: %v (%s)", arm.Name(), c.Survived, r.TCPNote)
		}
	}
	if dropper != nil && before != nil {
		if after, err := dropper.Drops(e); err == nil {
			var parts []string
			for k, v := range after {
				if d := v - before[k]; d != 0 && k != "ipv6" {
					parts = append(parts, fmt.Sprintf("%s=%d", k, d))
				}
			}
			sort.Strings(parts)
			if len(parts) > 0 {
				r.Notes = append(r.Notes, "reassign: drops counted by "+arm.Name()+" from the reassign to the end of the stream: "+strings.Join(parts, " "))
			}
		}
	}
	for _, p := range []*Proc{echoA, echoB, tcpA, tcpB} {
		if p != nil {
			p.Stop()
		}
	}
}

// udpCounters returns a namespace's UDP counters from /proc/net/snmp.
func udpCounters(e *Env, ns string) string {
	out, err := e.Run(ns, "cat", "/proc/net/snmp")
	if err != nil {
		return err.Error()
	}
	var names, vals []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Udp: ") {
			if names == nil {
				names = strings.Fields(l)[1:]
			} else {
				vals = strings.Fields(l)[1:]
			}
		}
	}
	var b strings.Builder
	for i := range names {
		if i < len(vals) && vals[i] != "0" {
			fmt.Fprintf(&b, "%s=%s ", names[i], vals[i])
		}
	}
	return strings.TrimSpace(b.String())
}

// SplitLost divides the stream's lost datagrams into those sent from 100 ms
// before the reassign command started to 500 ms after it ended (the
// reassign's) and the rest (load, scheduling: not the reassign's doing).
func (r *ArmResult) SplitLost() (atReassign, elsewhere int64) {
	s := r.Seq
	if s == nil {
		return 0, 0
	}
	const rate = 2000 // seqsend's rate in the reassign test
	from := (r.ReassignAtNS - s.StartNS - int64(100*time.Millisecond)) * rate / int64(time.Second)
	to := (r.ReassignEnd - s.StartNS + int64(500*time.Millisecond)) * rate / int64(time.Second)
	listed := int64(len(s.LostSeqs))
	for _, q := range s.LostSeqs {
		if q >= from && q <= to {
			atReassign++
		}
	}
	// Only the first 100 lost are listed; count the others as elsewhere.
	return atReassign, s.Lost - listed + (listed - atReassign)
}
