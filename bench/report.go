package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Report is the outcome of replaying one or more files: the totals at the
// top (the keys scripts read: packets, pps, ns_per_packet,
// allocs_per_packet, flows, drops) and one Result per file.
type Report struct {
	Result
	Files []*Result `json:"files"`
}

// NewReport sums results. Rates are recomputed from the summed packets and
// times; allocations per packet are weighted by packets; flows are summed
// (each file runs on its own switch).
func NewReport(results []*Result) *Report {
	rep := &Report{Files: results}
	t := &rep.Result
	t.Verdicts, t.Drops = map[string]uint64{}, map[string]uint64{}
	var allocs float64
	for _, r := range results {
		t.Loops = max(t.Loops, r.Loops)
		t.Records += r.Records
		t.Packets += r.Packets
		t.Seconds += r.Seconds
		t.WallSeconds += r.WallSeconds
		t.Flows += r.Flows
		t.FlowsCreated += r.FlowsCreated
		t.Translations += r.Translations
		t.Forwarded += r.Forwarded
		t.Local += r.Local
		t.Dropped += r.Dropped
		t.DeliveredUplink += r.DeliveredUplink
		t.DeliveredInside += r.DeliveredInside
		allocs += r.Allocs * float64(r.Packets)
		for k, v := range r.Verdicts {
			t.Verdicts[k] += v
		}
		for k, v := range r.Drops {
			t.Drops[k] += v
		}
	}
	if t.Packets > 0 && t.Seconds > 0 {
		t.PPS = float64(t.Packets) / t.Seconds
		t.NsPerPkt = t.Seconds * 1e9 / float64(t.Packets)
		t.Allocs = allocs / float64(t.Packets)
	}
	return rep
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(rep)
}

// WriteTable writes the report as text: one column per file (and a total
// column when there are several), then the verdicts.
func (rep *Report) WriteTable(w io.Writer) error {
	cols := rep.Files
	if len(cols) > 1 {
		total := rep.Result
		total.File = "total"
		cols = append(slices.Clip(cols), &total)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// Labels are padded here rather than being a cell, so that they
	// align left while the numbers align right.
	row := func(name string, f func(r *Result) string) {
		fmt.Fprintf(tw, "%-18s\t", name)
		for _, r := range cols {
			fmt.Fprintf(tw, "%s\t", f(r))
		}
		fmt.Fprintln(tw)
	}
	row("file", func(r *Result) string { return shortName(r.File) })
	row("packets", func(r *Result) string { return fmt.Sprint(r.Packets) })
	row("packets/s", func(r *Result) string { return fmt.Sprintf("%.0f", r.PPS) })
	row("ns/packet", func(r *Result) string { return fmt.Sprintf("%.1f", r.NsPerPkt) })
	row("allocs/packet", func(r *Result) string { return fmt.Sprintf("%.3f", r.Allocs) })
	row("records", func(r *Result) string { return fmt.Sprint(r.Records) })
	row("flows", func(r *Result) string { return fmt.Sprint(r.Flows) })
	row("flows created", func(r *Result) string { return fmt.Sprint(r.FlowsCreated) })
	row("translated", func(r *Result) string { return fmt.Sprint(r.Translations) })
	row("to uplink", func(r *Result) string { return fmt.Sprint(r.DeliveredUplink) })
	row("to inside", func(r *Result) string { return fmt.Sprint(r.DeliveredInside) })
	blank := func(*Result) string { return "" }
	row("verdicts:", blank)
	row("  forwarded", func(r *Result) string { return fmt.Sprint(r.Forwarded) })
	row("  local", func(r *Result) string { return fmt.Sprint(r.Local) })
	row("  dropped", func(r *Result) string { return fmt.Sprint(r.Dropped) })
	keys := map[string]bool{}
	for _, r := range cols {
		for k := range r.Drops {
			keys[k] = true
		}
	}
	if len(keys) > 0 {
		row("drops by reason:", blank)
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		row("  "+k, func(r *Result) string { return fmt.Sprint(r.Drops[k]) })
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Files {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "note: %s: %s\n", r.File, n)
		}
	}
	return nil
}

// shortName keeps the last two path elements of a file name.
func shortName(s string) string {
	parts := strings.Split(s, "/")
	if len(parts) > 2 {
		parts = parts[len(parts)-2:]
	}
	return strings.Join(parts, "/")
}
