package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPingStats(t *testing.T) {
	out := `PING 203.0.113.10 (203.0.113.10) 56(84) bytes of data.
64 bytes from 203.0.113.10: icmp_seq=1 ttl=63 time=0.300 ms
64 bytes from 203.0.113.10: icmp_seq=2 ttl=63 time=0.100 ms
64 bytes from 203.0.113.10: icmp_seq=3 ttl=63 time=0.200 ms
64 bytes from 203.0.113.10: icmp_seq=4 ttl=63 time=9.00 ms

--- 203.0.113.10 ping statistics ---
5 packets transmitted, 4 received, 20% packet loss, time 20ms
`
	p50, p99, loss, err := pingStats(out)
	if err != nil {
		t.Fatal(err)
	}
	if p50 != 0.2 || p99 != 9 || loss != 20 {
		t.Errorf("got p50 %v p99 %v loss %v, want 0.2 9 20", p50, p99, loss)
	}
	if _, _, _, err := pingStats("100% packet loss"); err == nil {
		t.Error("got no error for no answers, want one")
	}
}

func TestQuantile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0, 1}, {0.5, 5}, {0.99, 10}, {1, 10}} {
		if got := quantile(s, tc.q); got != tc.want {
			t.Errorf("quantile(%v): got %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile of nothing: got %v, want 0", got)
	}
}

func TestSplitLost(t *testing.T) {
	start := int64(1e18)
	at := start + int64(2*time.Second) // seq 4000 at 2000/s
	for _, tc := range []struct {
		name          string
		lost          []int64
		total         int64
		wantAt, wantE int64
	}{
		{"none", nil, 0, 0, 0},
		{"at the swap", []int64{4001, 4002}, 2, 2, 0},
		{"window edges", []int64{3800, 3799, 5060, 5061}, 4, 2, 2},
		{"elsewhere", []int64{100, 7000}, 2, 0, 2},
		{"more than listed", []int64{4001}, 150, 1, 149},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &ArmResult{ReassignAtNS: at, ReassignEnd: at + int64(30*time.Millisecond),
				Seq: &SeqResult{StartNS: start, Lost: tc.total, LostSeqs: tc.lost}}
			a, e := r.SplitLost()
			if a != tc.wantAt || e != tc.wantE {
				t.Errorf("got %d at the reassign and %d elsewhere, want %d and %d", a, e, tc.wantAt, tc.wantE)
			}
		})
	}
}

func TestSummaryMediansAndRatios(t *testing.T) {
	run := func(arm string, tcp1 float64, survived bool, errs map[string]string) *ArmResult {
		return &ArmResult{Arm: arm, TCP1Gbps: tcp1, TCPSurvived: survived, Moved: true, Errors: errs}
	}
	s := &Summary{Arms: []string{"roam", "kernel", "ovs"}, Runs: 3, PerRun: [][]*ArmResult{
		{run("roam", 8, true, nil), run("kernel", 10, false, nil), run("ovs", 4, true, nil)},
		{run("roam", 9, true, nil), run("kernel", 12, true, nil), run("ovs", 1, true, map[string]string{"tcp_1": "iperf3 failed"})},
		{run("roam", 7, false, nil), run("kernel", 11, true, nil), run("ovs", 5, true, nil)},
	}}
	s.summarize()
	if got := s.Medians["roam"]["tcp_1_gbps"]; got != 8 {
		t.Errorf("roam median: got %v, want 8", got)
	}
	if got := s.Medians["ovs"]["tcp_1_gbps"]; got != 4.5 {
		t.Errorf("ovs median of the two measured runs: got %v, want 4.5", got)
	}
	if got := s.Ratios["roam/kernel"]["tcp_1_gbps"]; got != 8.0/11 {
		t.Errorf("roam/kernel: got %v, want %v", got, 8.0/11)
	}
	if got := s.Medians["roam"]["tcp_survived"]; got != 2 {
		t.Errorf("runs in which TCP survived: got %v, want 2", got)
	}
	tab := s.Table()
	for _, want := range []string{"0.73x", "2/3", "ovs: tcp_1 failed: iperf3 failed"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}

func TestSlug(t *testing.T) {
	for _, tc := range []struct{ label, want string }{
		{"", ""},
		{"roamd with a patched port factory (tap.Open)", "-roamd-with-a-patched-port"},
	} {
		if got := (&Summary{Label: tc.label}).slug(); got != tc.want {
			t.Errorf("slug(%q): got %q, want %q", tc.label, got, tc.want)
		}
	}
}

// TestSeqResult: the reassign stream's summary from netlab's answers: lost
// sequence numbers, answers per VM and per 50 ms bin, the last vmA and
// first vmB answer, and vmA answers after vmB's first (reordered).
func TestSeqResult(t *testing.T) {
	start := time.Unix(100, 0)
	tags := map[uint64]byte{0: 'A', 1: 'A', 3: 'A', 4: 'B', 5: 'A', 6: 'B', 7: 'B'}
	at := map[uint64]time.Duration{}
	for seq := range tags {
		at[seq] = time.Duration(seq) * 20 * time.Millisecond
	}
	r := seqResult(start, 9, 2000, tags, at)
	if r.Sent != 9 || r.Answered != 7 || r.Lost != 2 || fmt.Sprint(r.LostSeqs) != "[2 8]" {
		t.Errorf("sent %d answered %d lost %d %v, want 9 7 2 [2 8]", r.Sent, r.Answered, r.Lost, r.LostSeqs)
	}
	if r.ByVM["A"] != 4 || r.ByVM["B"] != 3 || r.LastA != 5 || r.FirstB != 4 || r.Reorder != 1 {
		t.Errorf("by VM %v last A %d first B %d reordered %d, want A 4 B 3, 5, 4, 1", r.ByVM, r.LastA, r.FirstB, r.Reorder)
	}
	if want := start.UnixNano() + 6*int64(time.Second)/2000; r.LastATime != want {
		t.Errorf("last A due at %d, want %d", r.LastATime, want)
	}
	// 20 ms apart: bins of 50 ms hold seqs 0-2, 3-4, 5-7.
	if got := fmt.Sprint(r.Bins); got != "[map[A:2] map[A:1 B:1] map[A:1 B:2]]" {
		t.Errorf("bins %s", got)
	}
	if r := seqResult(start, 3, 2000, nil, nil); r.Lost != 3 || len(r.Bins) != 1 {
		t.Errorf("no answers: lost %d, %d bins; want 3 and one empty bin", r.Lost, len(r.Bins))
	}
}
