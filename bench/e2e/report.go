package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Summary is one invocation's results: every run's numbers and, per arm,
// the median of each metric over the runs in which it was measured.
type Summary struct {
	Date      string                        `json:"date"`
	Label     string                        `json:"label,omitempty"` // what differs from a plain make bench-e2e
	Runs      int                           `json:"runs"`
	Arms      []string                      `json:"arms"`
	Host      map[string]string             `json:"host"`
	Durations map[string]string             `json:"durations"`
	Medians   map[string]map[string]float64 `json:"medians"` // arm -> metric -> median
	Measured  map[string]map[string]int     `json:"measured"`
	Ratios    map[string]map[string]float64 `json:"ratios"` // "roam/kernel" -> metric -> ratio
	Methods   map[string]string             `json:"reassign_methods"`
	PerRun    [][]*ArmResult                `json:"per_run"`
	RoamSteps []string                      `json:"roam_steps,omitempty"`
	Pictures  []string                      `json:"pictures,omitempty"`
}

// metric is one row of the table.
type metric struct {
	key, label, unit, errKey string
	value                    func(*ArmResult) float64
	higherBetter             bool
	format                   string
}

var metrics = []metric{
	{"tcp_1_gbps", "TCP, 1 stream", "Gbit/s", "tcp_1", func(r *ArmResult) float64 { return r.TCP1Gbps }, true, "%.2f"},
	{"tcp_4_gbps", "TCP, 4 streams", "Gbit/s", "tcp_4", func(r *ArmResult) float64 { return r.TCP4Gbps }, true, "%.2f"},
	{"udp64_pps", "UDP 64-byte delivered", "pkt/s", "udp64", func(r *ArmResult) float64 { return r.UDPPps }, true, "%.0f"},
	{"udp64_sent_pps", "UDP 64-byte sent by the client", "pkt/s", "udp64", func(r *ArmResult) float64 { return r.UDPSentPps }, true, "%.0f"},
	{"conn_per_s", "new TCP connections", "conn/s", "conn", func(r *ArmResult) float64 { return r.ConnPerS }, true, "%.0f"},
	{"ping_p50_ms", "ping under load p50", "ms", "ping", func(r *ArmResult) float64 { return r.PingP50MS }, false, "%.3f"},
	{"ping_p99_ms", "ping under load p99", "ms", "ping", func(r *ArmResult) float64 { return r.PingP99MS }, false, "%.3f"},
	{"ping_loss_pct", "ping under load, lost", "%", "ping", func(r *ArmResult) float64 { return r.PingLoss }, false, "%.1f"},
	{"reassign_lost", "lost at the reassign @2000 pkt/s", "packets", "reassign", func(r *ArmResult) float64 { a, _ := r.SplitLost(); return float64(a) }, false, "%.0f"},
	{"stream_lost", "lost elsewhere in the 4 s stream", "packets", "reassign", func(r *ArmResult) float64 { _, b := r.SplitLost(); return float64(b) }, false, "%.0f"},
	{"moved", "stream moved to vmB", "runs", "reassign", func(r *ArmResult) float64 { return b2f(r.Moved) }, true, "%.0f"},
	{"vma_after", "vmA answers after reassign", "packets", "reassign", func(r *ArmResult) float64 { return float64(r.AAfter) }, false, "%.0f"},
	{"reassign_cmd_ms", "reassign command time", "ms", "reassign", func(r *ArmResult) float64 { return r.ReassignMS }, false, "%.1f"},
	{"tcp_survived", "TCP survives reassign (socket moved)", "runs", "tcp survive", func(r *ArmResult) float64 { return b2f(r.TCPSurvived) }, true, "%.0f"},
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// valid reports whether metric m was measured in r.
func (m metric) valid(r *ArmResult) bool {
	if r.Errors["setup"] != "" || r.Errors["connectivity"] != "" {
		return false
	}
	if m.errKey == "tcp survive" && r.Errors["reassign"] != "" {
		return false
	}
	return r.Errors[m.errKey] == ""
}

func (s *Summary) summarize() {
	s.Medians = map[string]map[string]float64{}
	s.Measured = map[string]map[string]int{}
	s.Methods = map[string]string{}
	for _, arm := range s.Arms {
		s.Medians[arm] = map[string]float64{}
		s.Measured[arm] = map[string]int{}
		for _, m := range metrics {
			var vals []float64
			for _, run := range s.PerRun {
				for _, r := range run {
					if r.Arm == arm && m.valid(r) {
						vals = append(vals, m.value(r))
					}
					if r.Arm == arm && r.Method != "" {
						s.Methods[arm] = r.Method
					}
				}
			}
			s.Measured[arm][m.key] = len(vals)
			if len(vals) == 0 {
				continue
			}
			if m.key == "tcp_survived" || m.key == "moved" {
				// Count of runs in which it survived, not a median.
				var n float64
				for _, v := range vals {
					n += v
				}
				s.Medians[arm][m.key] = n
				continue
			}
			sort.Float64s(vals)
			med := vals[len(vals)/2]
			if len(vals)%2 == 0 {
				med = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
			}
			s.Medians[arm][m.key] = med
		}
	}
	s.Ratios = map[string]map[string]float64{}
	for _, other := range []string{"kernel", "ovs"} {
		key := "roam/" + other
		s.Ratios[key] = map[string]float64{}
		for _, m := range metrics {
			a, aok := s.Medians["roam"][m.key]
			b, bok := s.Medians[other][m.key]
			if aok && bok && b != 0 && m.key != "tcp_survived" && m.key != "moved" {
				s.Ratios[key][m.key] = a / b
			}
		}
	}
}

func (s *Summary) cell(arm string, m metric) string {
	v, ok := s.Medians[arm][m.key]
	if !ok {
		if containsStr(s.Arms, arm) {
			return "failed"
		}
		return "-"
	}
	if m.key == "tcp_survived" || m.key == "moved" {
		return fmt.Sprintf("%.0f/%d", v, s.Measured[arm][m.key])
	}
	return fmt.Sprintf(m.format, v)
}

func containsStr(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (s *Summary) ratio(key string, m metric) string {
	v, ok := s.Ratios[key][m.key]
	if !ok || math.IsInf(v, 0) || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// rows returns the table: header, then one row per metric.
func (s *Summary) rows() [][]string {
	rows := [][]string{{"metric", "unit", "roam", "kernel", "ovs", "roam/kernel", "roam/ovs"}}
	for _, m := range metrics {
		rows = append(rows, []string{m.label, m.unit, s.cell("roam", m), s.cell("kernel", m), s.cell("ovs", m), s.ratio("roam/kernel", m), s.ratio("roam/ovs", m)})
	}
	return rows
}

// Table is the plain-text table printed on standard output.
func (s *Summary) Table() string {
	rows := s.rows()
	w := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			w[i] = max(w[i], len(c))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "roam bench-e2e %s, medians of %d run(s)\n", s.Date, s.Runs)
	for j, r := range rows {
		for i, c := range r {
			if i < 2 {
				fmt.Fprintf(&b, "%-*s  ", w[i], c)
			} else {
				fmt.Fprintf(&b, "%*s  ", w[i], c)
			}
		}
		b.WriteString("\n")
		if j == 0 {
			b.WriteString(strings.Repeat("-", sum(w)+2*len(w)) + "\n")
		}
	}
	s.writeFailures(&b, "")
	return b.String()
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// writeFailures lists every failed measurement once per arm and message.
func (s *Summary) writeFailures(b *strings.Builder, bullet string) {
	seen := map[string]bool{}
	for _, run := range s.PerRun {
		for _, r := range run {
			keys := make([]string, 0, len(r.Errors))
			for k := range r.Errors {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				line := fmt.Sprintf("%s%s: %s failed: %s", bullet, r.Arm, k, oneLine(r.Errors[k]))
				if !seen[line] {
					seen[line] = true
					b.WriteString(line + "\n")
				}
			}
		}
	}
}

func oneLine(s string) string {
	return firstN(strings.Join(strings.Fields(s), " "), 400)
}

// Markdown renders the report for bench/results.
func (s *Summary) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# roam bench-e2e, %s\n\n", s.Date)
	if s.Label != "" {
		fmt.Fprintf(&b, "**Not a plain `make bench-e2e` run: %s.**\n\n", s.Label)
	}
	fmt.Fprintf(&b, "Medians of %d run(s) on one host (%s CPUs, kernel %s, %s, %s; load average at the start %s, at the end %s). "+
		"Each measurement: TCP %s, UDP %s, connections %s, ping %s, reassign stream %s.\n\n",
		s.Runs, s.Host["cpus"], s.Host["kernel"], s.Host["ovs"], s.Host["iperf3"], s.Host["loadavg_at_start"], s.Host["loadavg_at_end"],
		s.Durations["tcp"], s.Durations["udp"], s.Durations["conn"], s.Durations["ping"], s.Durations["reassign"])
	rows := s.rows()
	for j, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
		if j == 0 {
			b.WriteString("|---|---|---:|---:|---:|---:|---:|\n")
		}
	}
	b.WriteString("\nTraffic goes from the `pub` namespace to the public IP " + eipIP + ", which each arm maps to vmA (" + vmIP + "); " +
		"the reassign moves it to vmB while a 2000 pkt/s sequenced UDP stream and an echoing TCP connection run. " +
		"The TCP connection's socket is moved from vmA to vmB with TCP_REPAIR just before the reassign; it survives only if the gateway keeps delivering the flow, translated the same way, to vmB.\n\n")
	b.WriteString("How each arm reassigns:\n\n")
	for _, arm := range s.Arms {
		fmt.Fprintf(&b, "- %s: %s\n", arm, s.Methods[arm])
	}
	notes := map[string]bool{}
	var nb strings.Builder
	for _, run := range s.PerRun {
		for _, r := range run {
			for _, n := range r.Notes {
				line := "- " + r.Arm + ": " + oneLine(n) + "\n"
				if !notes[line] {
					notes[line] = true
					nb.WriteString(line)
				}
			}
		}
	}
	if nb.Len() > 0 {
		b.WriteString("\nNotes:\n\n" + nb.String())
	}
	var f strings.Builder
	s.writeFailures(&f, "- ")
	if f.Len() > 0 {
		b.WriteString("\nFailures:\n\n" + f.String())
	}
	if len(s.RoamSteps) > 0 {
		b.WriteString("\nroamctl steps of the failed roam arm:\n\n")
		for _, st := range s.RoamSteps {
			b.WriteString("    " + oneLine(st) + "\n")
		}
	}
	for _, p := range s.Pictures {
		fmt.Fprintf(&b, "\n![%s](%s)\n", p, p)
	}
	return b.String()
}

// Write saves the summary as e2e-DATE.json and .md in dir, and as
// latest.json and latest.md.
func (s *Summary) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t, _ := time.Parse(time.RFC3339, s.Date)
	stamp := t.Format("20060102-150405") + s.slug()
	js, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	md := s.Markdown()
	var files []string
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"e2e-" + stamp + ".json", js}, {"e2e-" + stamp + ".md", []byte(md)},
		{"latest.json", js}, {"latest.md", []byte(md)},
	} {
		if s.Label != "" && strings.HasPrefix(f.name, "latest") {
			continue
		}
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return files, err
		}
		files = append(files, p)
	}
	return files, nil
}

// slug is "-" and the label's first words, for file names; "" without one.
func (s *Summary) slug() string {
	if s.Label == "" {
		return ""
	}
	var b strings.Builder
	for _, w := range strings.Fields(strings.ToLower(s.Label)) {
		w = strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, w)
		if w == "" {
			continue
		}
		if b.Len()+len(w) > 32 {
			break
		}
		b.WriteString("-" + w)
	}
	return b.String()
}

// ReadSummary loads a summary written by Write, to render it again.
func ReadSummary(path string) (*Summary, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.summarize()
	return &s, nil
}

// PickReassign returns the run of arm whose loss is the median, so the
// picture shows a typical reassign rather than the best or the worst.
func (s *Summary) PickReassign(arm string) *ArmResult {
	var rs []*ArmResult
	for _, run := range s.PerRun {
		for _, r := range run {
			if r.Arm == arm && r.Seq != nil && len(r.Seq.Bins) > 0 {
				rs = append(rs, r)
			}
		}
	}
	if len(rs) == 0 {
		return nil
	}
	// Runs in which the stream did move come first: a run in which it did
	// not is reported in the table, but is not a picture of a reassign.
	var moved []*ArmResult
	for _, r := range rs {
		if r.Moved {
			moved = append(moved, r)
		}
	}
	if len(moved) > 0 {
		rs = moved
	}
	sort.SliceStable(rs, func(i, j int) bool {
		ai, ei := rs[i].SplitLost()
		aj, ej := rs[j].SplitLost()
		return ai < aj || ai == aj && ei < ej
	})
	return rs[len(rs)/2]
}

// PictureArms returns the arms that the picture of s has a panel for, in
// its order: roam, kernel, ovs.
func PictureArms(s *Summary) []string {
	var arms []string
	for _, arm := range []string{"roam", "kernel", "ovs"} {
		if containsStr(s.Arms, arm) {
			arms = append(arms, arm)
		}
	}
	return arms
}

// PictureNames returns the file names of the picture of s:
// reassign-STAMP.png, and latest-reassign.png unless s has a label.
func (s *Summary) PictureNames() []string {
	t0, _ := time.Parse(time.RFC3339, s.Date)
	names := []string{"reassign-" + t0.Format("20060102-150405") + s.slug() + ".png"}
	if s.Label == "" {
		names = append(names, "latest-reassign.png")
	}
	return names
}

// FirstError returns ": " and arm's first failure, wrapped for a title.
func (s *Summary) FirstError(arm string) string {
	for _, run := range s.PerRun {
		for _, r := range run {
			if r.Arm != arm || len(r.Errors) == 0 {
				continue
			}
			keys := make([]string, 0, len(r.Errors))
			for k := range r.Errors {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			msg := oneLine(keys[0] + ": " + r.Errors[keys[0]])
			var out []byte
			col := 0
			for _, w := range strings.Fields(msg) {
				if col+len(w) > 90 {
					out = append(out, '\n')
					col = 0
				} else if col > 0 {
					out = append(out, ' ')
					col++
				}
				out = append(out, w...)
				col += len(w)
			}
			return ":\n" + string(out)
		}
	}
	return ""
}
