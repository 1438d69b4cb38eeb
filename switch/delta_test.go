package vswitch

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"testing"
)

// describe renders a snapshot's indexes by IDs, to compare snapshots built
// different ways.
func describe(s *Snapshot) string {
	var lines []string
	for a, e := range s.private.all() {
		lines = append(lines, fmt.Sprintf("private %08x %s", a, e.id))
	}
	for p, e := range s.ports.all() {
		lines = append(lines, fmt.Sprintf("port %s %s", p.name, e.id))
	}
	for a, pe := range s.public.all() {
		lines = append(lines, fmt.Sprintf("public %08x %s %08x", a, pe.rec.id, pe.private))
	}
	for m, id := range s.macs.all() {
		lines = append(lines, fmt.Sprintf("mac %v %s", m, id))
	}
	for id, e := range s.records.all() {
		var ports []string
		for _, p := range e.ports {
			ports = append(ports, p.name)
		}
		lines = append(lines, fmt.Sprintf("record %s ips %v ports %v sdc %v in %d out %d pub %v", id, e.ips, ports, e.sdc, len(e.ingress), len(e.egress), e.pubOf))
		for _, r := range append(slices.Clone(e.ingress), e.egress...) {
			if r.gidx != 0 {
				var m []uint32
				for a := range s.groupList[r.gidx-1].members.all() {
					m = append(m, a)
				}
				slices.Sort(m)
				lines = append(lines, fmt.Sprintf("record %s rule group %s members %v", id, s.groupList[r.gidx-1].id, m))
			}
		}
	}
	for _, g := range s.groupList {
		var m []uint32
		for a := range g.members.all() {
			m = append(m, a)
		}
		slices.Sort(m)
		lines = append(lines, fmt.Sprintf("group %s %v", g.id, m))
	}
	for _, r := range s.routes {
		lines = append(lines, fmt.Sprintf("route %08x/%d %s", r.net, r.bits, r.rec.id))
	}
	sort.Strings(lines)
	out := ""
	for _, l := range lines {
		out += l + "\n"
	}
	return out
}

func TestApplyDeltaMatchesApply(t *testing.T) {
	w := newWorld(t, Options{})
	// Groups that refer to each other, so membership changes matter.
	w.cfg.Groups = append(w.cfg.Groups, Group{ID: "sg-peer", Ingress: []Rule{{Group: "sg-int"}}, Egress: []Rule{{Group: "sg-int"}}})
	w.cfg.Records[0].Groups = []string{"sg-web", "sg-peer"}
	w.apply()
	before := describe(w.sw.snap.Load())

	steps := []struct {
		name    string
		change  func(c *Config)
		changed []string
	}{
		{"reassign A to vmA2", func(c *Config) { c.Records[0].Ports = []string{"vmA2"} }, []string{"eni-0000000a"}},
		{"B leaves sg-int", func(c *Config) { c.Records[1].Groups = nil }, []string{"eni-00000014"}},
		{"add D", func(c *Config) {
			c.Records = append(c.Records, Record{ID: "eni-00000028", Subnet: "subnet-0", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.40")},
				MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x28}, Groups: []string{"sg-int"}, Ports: []string{"vmA"},
				PublicIPs: []Association{{Public: netip.MustParseAddr("198.51.100.40"), Private: netip.MustParseAddr("10.0.0.40")}}})
		}, []string{"eni-00000028"}},
		{"remove C", func(c *Config) { c.Records = slices.Delete(c.Records, 2, 3) }, []string{"eni-0000001e"}},
		{"move A's public IP to B", func(c *Config) {
			c.Records[0].PublicIPs = nil
			c.Records[1].PublicIPs = []Association{{Public: eipA, Private: ipB}}
		}, []string{"eni-0000000a", "eni-00000014"}},
	}
	cur := w.cfg
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			next := cur
			next.Records = slices.Clone(cur.Records)
			st.change(&next)
			if err := w.sw.ApplyDelta(&next, st.changed); err != nil {
				t.Fatal(err)
			}
			got := describe(w.sw.snap.Load())
			full, err := compile(&next, w.sw.portByName, func(id string) *recordState { st, _ := w.sw.recordState(id); return st }, w.sw.budget)
			if err != nil {
				t.Fatal(err)
			}
			if want := describe(full); got != want {
				t.Fatalf("delta snapshot differs from a full compile:\n got:\n%s\nwant:\n%s", got, want)
			}
			cur = next
		})
	}
	// A refused delta changes nothing.
	snap := w.sw.snap.Load()
	bad := cur
	bad.Records = slices.Clone(cur.Records)
	bad.Records[1].IPs = []netip.Addr{ipA} // no longer free? A still holds it
	bad.Records[0].IPs = []netip.Addr{ipA}
	if err := w.sw.ApplyDelta(&bad, []string{"eni-00000014"}); err == nil {
		t.Fatal("a conflicting delta was accepted")
	}
	if w.sw.snap.Load() != snap {
		t.Fatal("a refused delta replaced the snapshot")
	}
	_ = before
}

// BenchmarkApplyDelta compares publishing a reassign by a full Apply and by
// ApplyDelta with 10K records, and ApplyDelta alone with 100K (its cost
// must not grow with the records).
func BenchmarkApplyDelta(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		benchmarkApplyDelta(b, n)
	}
}

func benchmarkApplyDelta(b *testing.B, n int) {
	sw := New(Options{MaxRecords: 2 * n})
	cfg := &Config{Subnets: []Subnet{{ID: "subnet-0", Prefix: netip.MustParsePrefix("10.0.0.0/8")}},
		Groups: []Group{{ID: "sg-1", Ingress: []Rule{{Group: "sg-1"}}, Egress: []Rule{{CIDR: netip.MustParsePrefix("0.0.0.0/0")}}}}}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("p%d", i)
		sw.AddPort(newNullPort(name))
		ip := netip.AddrFrom4([4]byte{10, byte(i / 62500), byte(1 + i/250%250), byte(1 + i%250)})
		cfg.Records = append(cfg.Records, Record{ID: fmt.Sprintf("eni-%08x", i+1), Subnet: "subnet-0", IPs: []netip.Addr{ip},
			MAC: net.HardwareAddr{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}, Groups: []string{"sg-1"}, Ports: []string{name}})
	}
	sw.AddPort(newNullPort("spare"))
	if err := sw.Apply(cfg); err != nil {
		b.Fatal(err)
	}
	cfgs := [2]*Config{}
	for k, port := range []string{"spare", "p0"} {
		c := *cfg
		c.Records = slices.Clone(cfg.Records)
		c.Records[0].Ports = []string{port}
		cfgs[k] = &c
	}
	if n <= 10000 {
		b.Run(fmt.Sprintf("Apply/records=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := sw.Apply(cfgs[i%2]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run(fmt.Sprintf("ApplyDelta/records=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := sw.ApplyDelta(cfgs[i%2], []string{"eni-00000001"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
