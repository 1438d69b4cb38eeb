package vswitch

// Open vSwitch's conntrack test vectors (../shared/pcaps/ovs-vectors: the
// frames each OVS test injects, and the exact egress frames some expect),
// reproduced through roam's conntrack and NAT: the nat.Table, nat.Frags,
// nat.Rewrite and nat.RewriteError calls that the pipeline makes. OVS's
// ct(commit, nat(...)) actions become nat.Specs: a DNAT is a Spec whose To
// has another destination (the pipeline makes one for a 1:1 public IP; a
// DNAT that changes the port, as two OVS cases use, exists only at this
// level, since roam has no port forwarding), a SNAT to an address is a PAT
// Spec. The one case whose NAT roam's records can express (fragmentation
// nat: an address-only DNAT, i.e. a 1:1 public IP) also runs through the
// whole switch, where the only difference is the TTL a router decrements.
//
// Where roam behaves differently from OVS on purpose, the case says so and
// asserts roam's behaviour.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"roam/internal/packet"
	"roam/nat"
	"roam/tap"
)

const ovsDir = "../../shared/pcaps/ovs-vectors"

type ovsCase struct {
	Case     string   `json:"case"`
	Pcap     string   `json:"pcap"`
	NInputs  int      `json:"n_inputs"`
	Expected []string `json:"expected_output_hex_or_prefix"`
}

// readPcapFrames reads a classic little-endian Ethernet pcap.
func readPcapFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("%s: not a little-endian Ethernet pcap", path)
	}
	var out [][]byte
	for off := 24; off+16 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off+8:]))
		off += 16
		if off+n > len(b) {
			t.Fatalf("%s: truncated record", path)
		}
		out = append(out, append([]byte(nil), b[off:off+n]...))
		off += n
	}
	return out
}

// ovsCT is roam's conntrack and NAT driven the way the pipeline drives it,
// with a rule standing for the OVS flow table's ct(commit, nat) actions.
type ovsCT struct {
	t     *testing.T
	ct    *nat.Table
	frags *nat.Frags
	now   uint32
	// rule returns the Spec to commit for a first packet with tuple k,
	// or false to leave it untracked (OVS: ct without commit).
	rule func(k nat.Tuple) (nat.Spec, bool)
}

// ovsOut is what happened to one input frame.
type ovsOut struct {
	frame   []byte        // the frame after translation (nil: dropped)
	reason  packet.Reason // why it was dropped
	v       nat.Verdict
	related bool // an ICMP error matched to a flow
	held    bool
}

func newOVSCT(t *testing.T, o nat.Options, rule func(k nat.Tuple) (nat.Spec, bool)) *ovsCT {
	return &ovsCT{t: t, ct: nat.NewTable(o), frags: nat.NewFrags(nat.FragOptions{}), now: 1_700_000_000, rule: rule}
}

func (c *ovsCT) run(in []byte) ovsOut {
	frame := append([]byte(nil), in...)
	var p packet.Parsed
	if r := packet.Parse(frame, &p); r != packet.ReasonNone {
		return ovsOut{reason: r}
	}
	if p.EthType != packet.EtherTypeIPv4 {
		return ovsOut{reason: packet.ReasonBadEtherType}
	}
	if p.Frag == packet.LaterFragment {
		fk := nat.FragKeyOf(&p, frame)
		r, nsrc, ndst, ok := c.frags.LookupAt(fk, fragOffset(frame, &p), c.now)
		if !ok {
			c.frags.Hold(fk, frame, c.now)
			return ovsOut{held: true}
		}
		if r != packet.ReasonNone {
			return ovsOut{reason: r}
		}
		k := nat.Tuple{Src: p.Src, Dst: p.Dst, Proto: p.Proto}
		nat.Rewrite(frame, &p, k, nat.Tuple{Src: nsrc, Dst: ndst, Proto: p.Proto}, false)
		return ovsOut{frame: frame}
	}
	if p.IsError {
		if !nat.ICMPChecksumValid(frame, &p) || !packet.IPv4(frame[p.Inner.L3:p.End]).ChecksumValid() {
			return ovsOut{reason: ReasonBadChecksum}
		}
		ek := nat.ErrorKey(&p)
		v := c.ct.Peek(ek, c.now)
		if !v.Found {
			return ovsOut{reason: ReasonICMPNoFlow}
		}
		if ek != v.To {
			nat.RewriteError(frame, &p, ek, v.To)
		}
		return ovsOut{frame: frame, v: v, related: true}
	}
	k := nat.TupleOf(&p)
	var seg nat.Seg
	sp := (*nat.Seg)(nil)
	if nat.SegOf(&p, frame, &seg) {
		sp = &seg
	}
	v := c.ct.Track(k, sp, c.now)
	if !v.Found && v.Reason == packet.ReasonNone {
		spec, commit := c.rule(k)
		if !commit {
			return ovsOut{frame: frame} // untracked, forwarded as is
		}
		v = c.ct.Create(&spec, sp, c.now)
	}
	if p.Frag == packet.FirstFragment {
		fk := nat.FragKeyOf(&p, frame)
		c.frags.LearnFirst(fk, v.Reason, v.To.Src, v.To.Dst, p.End-p.L4, c.now)
	}
	if v.Reason != packet.ReasonNone {
		return ovsOut{reason: v.Reason, v: v}
	}
	if v.To != k {
		nat.Rewrite(frame, &p, k, v.To, false)
	}
	return ovsOut{frame: frame, v: v}
}

// drain returns the fragments released by a first fragment's verdict.
func (c *ovsCT) drain(first []byte) [][]byte {
	var p packet.Parsed
	packet.Parse(first, &p)
	var out [][]byte
	c.frags.Drain(nat.FragKeyOf(&p, first), func(f []byte) { out = append(out, append([]byte(nil), f...)) })
	for i, f := range out {
		var q packet.Parsed
		packet.Parse(f, &q)
		r, nsrc, ndst, ok := c.frags.LookupAt(nat.FragKeyOf(&q, f), fragOffset(f, &q), c.now)
		if !ok || r != packet.ReasonNone {
			out[i] = nil
			continue
		}
		nat.Rewrite(f, &q, nat.Tuple{Src: q.Src, Dst: q.Dst, Proto: q.Proto}, nat.Tuple{Src: nsrc, Dst: ndst, Proto: q.Proto}, false)
	}
	return out
}

func a4(s string) uint32 { return packet.AddrFrom(netip.MustParseAddr(s)) }

// commitAll tracks every first packet without translation (ct(commit)).
func commitAll(k nat.Tuple) (nat.Spec, bool) { return nat.Spec{Orig: k, To: k}, true }

// dnat returns a rule that commits every first packet to dst (and dport,
// when not 0) with a destination translation, as ct(commit,nat(dst=...)).
func dnat(match, dst uint32, dport uint16) func(k nat.Tuple) (nat.Spec, bool) {
	return func(k nat.Tuple) (nat.Spec, bool) {
		to := k
		if k.Dst == match {
			to.Dst = dst
			if dport != 0 {
				to.DPort = dport
			}
		}
		return nat.Spec{Orig: k, To: to}, true
	}
}

func wantHex(t *testing.T, got []byte, want string) {
	t.Helper()
	w, err := hex.DecodeString(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < len(w) || !bytes.Equal(got[:len(w)], w) {
		t.Fatalf("egress frame differs\n got  %x\n want %x", got[:min(len(got), len(w))], w)
	}
}

func TestOVSConntrackVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(ovsDir, "ovs_cases.json"))
	if err != nil {
		t.Skipf("OVS vectors not available (%v): ../shared is absent", err)
	}
	var cases []ovsCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	// One check per case, by pcap; every case of the file must have one.
	checks := map[string]func(t *testing.T, in [][]byte, want []string){
		"sys_conntrack-controller.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			dirs := []nat.Dir{}
			for _, f := range in {
				o := c.run(f)
				if o.frame == nil {
					t.Fatalf("dropped: %v", o.reason)
				}
				dirs = append(dirs, o.v.Dir)
			}
			if c.ct.Len() != 1 || dirs[1] != nat.Reply || dirs[2] != nat.Orig {
				t.Fatalf("flows %d, directions %v; want 1 flow, orig/reply/orig", c.ct.Len(), dirs)
			}
		},
		// OVS's ct(force) commits a new entry when a packet goes the
		// reply way of an existing one; roam has no force: one flow,
		// both directions tracked.
		"sys_conntrack-force-commit.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			for _, f := range in {
				if o := c.run(f); o.frame == nil {
					t.Fatalf("dropped: %v", o.reason)
				}
			}
			if c.ct.Len() != 1 {
				t.Fatalf("%d flows, want 1", c.ct.Len())
			}
		},
		"sys_conntrack-ct-flush.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			for i, f := range in {
				if o := c.run(f); o.frame == nil {
					t.Fatalf("packet %d dropped: %v", i, o.reason)
				}
				if i%4 == 3 { // the test flushes between rounds
					c.ct.Flush(0)
					if c.ct.Len() != 0 {
						t.Fatalf("%d flows after flush", c.ct.Len())
					}
				}
			}
		},
		// OVS hands out 500, 501, 502; roam preserves the first and
		// searches a same-parity id for the others: distinct, not
		// sequential.
		"sys_conntrack-snat-with-icmp-id.pcap": func(t *testing.T, in [][]byte, _ []string) {
			pub := a4("10.0.0.201")
			c := newOVSCT(t, nat.Options{}, func(k nat.Tuple) (nat.Spec, bool) {
				to := k
				to.Src = pub
				return nat.Spec{Orig: k, To: to, PATOut: true}, true
			})
			seen := map[uint16]bool{}
			for i, f := range in {
				o := c.run(f)
				if o.frame == nil {
					t.Fatalf("packet %d dropped: %v", i, o.reason)
				}
				var p packet.Parsed
				packet.Parse(o.frame, &p)
				id := packet.ICMP(o.frame[p.L4:]).ID()
				if p.Src != pub || seen[id] || (i == 0 && id != 500) {
					t.Fatalf("packet %d: from %v id %d (seen %v), want from 10.0.0.201, a new id, 500 first", i, packet.Addr(p.Src), id, seen)
				}
				seen[id] = true
			}
		},
		"sys_conntrack-new-connections.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			for _, f := range in {
				c.run(f)
			}
			c.ct.Flows(0, c.now, func(f nat.FlowInfo) bool {
				if f.Replied || f.Assured {
					t.Errorf("flow %v replied %v assured %v with no reply", f.Orig, f.Replied, f.Assured)
				}
				return true
			})
			if c.ct.Len() != 1 {
				t.Fatalf("%d flows, want 1", c.ct.Len())
			}
		},
		// VRRP to 224.0.0.18: OVS tracks the generic protocol; roam never
		// forwards multicast (not_for_us) and PAT refuses protocols it
		// cannot map. The pipeline's verdict is checked.
		"sys_conntrack-generic-ip-protocol.pcap": func(t *testing.T, in [][]byte, _ []string) {
			w := newWorld(t, Options{})
			ip := netip.MustParseAddr("10.0.0.30")
			w.cfg.Records = append(w.cfg.Records, Record{ID: "eni-00000030", Subnet: "subnet-0", IPs: []netip.Addr{ip}, MAC: []byte{2, 0, 0, 0, 0, 0x30}, Ports: []string{"vmA2"}})
			w.apply()
			f := in[0]
			copy(f[14+12:], ip.AsSlice())
			packet.IPv4(f[14:]).ComputeChecksum()
			w.send("vmA2", f)
			w.none("uplink")
			if w.drops("not_for_us") != 1 {
				t.Fatalf("drops %v, want not_for_us", w.sw.Counters().Drops)
			}
		},
		"sys_conntrack-icmp-related-to-original-direction.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			for i, f := range in {
				o := c.run(f)
				if o.frame == nil {
					t.Fatalf("packet %d dropped: %v", i, o.reason)
				}
				if i >= 2 && (!o.related || !bytes.Equal(o.frame, f)) {
					t.Fatalf("packet %d: related %v, changed %v; want related, unchanged", i, o.related, !bytes.Equal(o.frame, f))
				}
			}
		},
		"sys_conntrack-icmp-related-2.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			if o := c.run(in[0]); o.frame != nil || c.ct.Len() != 0 {
				t.Fatalf("unsolicited error: forwarded %v, %d flows; want dropped (invalid), none", o.frame != nil, c.ct.Len())
			}
			if o := c.run(in[1]); o.frame == nil || !o.v.New {
				t.Fatalf("UDP: %+v, want a new flow", o)
			}
			if o := c.run(in[2]); !o.related {
				t.Fatalf("error from a midpoint: %v, want related to the flow", o.reason)
			}
		},
		"dpif_ofproto-dpif-conntrack-icmp-related.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			if o := c.run(in[0]); o.frame != nil {
				t.Fatal("unsolicited error forwarded")
			}
			c.run(in[1])
			if o := c.run(in[2]); !o.related {
				t.Fatalf("error: %+v, want related", o)
			}
		},
		"sys_conntrack-icmp-related-nat-with-single-port.pcap": func(t *testing.T, in [][]byte, want []string) {
			c := newOVSCT(t, nat.Options{}, dnat(a4("10.1.1.240"), a4("10.1.1.2"), 8080))
			if o := c.run(in[0]); o.frame == nil {
				t.Fatalf("dropped: %v", o.reason)
			}
			o := c.run(in[1])
			if !o.related {
				t.Fatalf("error not related: %v", o.reason)
			}
			wantHex(t, o.frame, want[0])
		},
		"dpif_ofproto-dpif-conntrack-related-nat.pcap": func(t *testing.T, in [][]byte, want []string) {
			c := newOVSCT(t, nat.Options{}, dnat(a4("172.16.0.2"), a4("1.2.3.4"), 10000))
			if o := c.run(in[0]); o.frame == nil {
				t.Fatalf("dropped: %v", o.reason)
			}
			o := c.run(in[1])
			if !o.related {
				t.Fatalf("error not related: %v", o.reason)
			}
			// OVS's expected frame carries the input's MACs swapped by
			// its flow table; compare from the EtherType on.
			wantHex(t, o.frame[12:], want[0][24:])
		},
		"dpif_ofproto-dpif-conntrack-fragmentation-nat.pcap": func(t *testing.T, in [][]byte, want []string) {
			c := newOVSCT(t, nat.Options{}, dnat(a4("172.16.0.2"), a4("1.2.3.4"), 0))
			var out [][]byte
			o := c.run(in[0])
			if o.frame == nil {
				t.Fatalf("first fragment dropped: %v", o.reason)
			}
			out = append(out, o.frame)
			o = c.run(in[1])
			if o.frame == nil {
				t.Fatalf("second fragment dropped: %v (held %v)", o.reason, o.held)
			}
			out = append(out, o.frame)
			for i := range want {
				wantHex(t, out[i][14:], want[i])
			}
			// And out of order: the second is held until the first.
			c = newOVSCT(t, nat.Options{}, dnat(a4("172.16.0.2"), a4("1.2.3.4"), 0))
			if o := c.run(in[1]); !o.held {
				t.Fatal("a later fragment before its first was not held")
			}
			first := c.run(in[0])
			rel := c.drain(in[0])
			if len(rel) != 1 || rel[0] == nil {
				t.Fatalf("released %d fragments, want 1", len(rel))
			}
			wantHex(t, first.frame[14:], want[0])
			wantHex(t, rel[0][14:], want[1])
		},
		"sys_conntrack-icmp-from-different-source-related-with-nat.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, dnat(a4("192.168.20.20"), a4("192.168.10.20"), 0))
			c.run(in[0])
			if o := c.run(in[1]); o.v.Dir != nat.Reply {
				t.Fatalf("reply not tracked as such: %+v", o)
			}
			for _, i := range []int{2, 4} {
				o := c.run(in[i])
				if !o.related {
					t.Fatalf("packet %d: not related (%v)", i, o.reason)
				}
				var p packet.Parsed
				packet.Parse(o.frame, &p)
				// Reverse-NATed: the error reaches the end that sent
				// the embedded datagram, which reads as that end sent it.
				if p.Dst != p.Inner.Src {
					t.Fatalf("packet %d: outer to %v, embedded from %v", i, packet.Addr(p.Dst), packet.Addr(p.Inner.Src))
				}
				if i == 2 && (p.Dst != a4("192.168.10.20") || p.Inner.Src != a4("192.168.10.20")) {
					t.Fatalf("packet 2: to %v, want 192.168.10.20 (the DNAT target)", packet.Addr(p.Dst))
				}
				if i == 4 && p.Inner.Dst != a4("192.168.20.20") {
					t.Fatalf("packet 4: embedded to %v, want 192.168.20.20 (DNAT reverted)", packet.Addr(p.Inner.Dst))
				}
			}
			c.run(in[3])
		},
		"dpif_ofproto-dpif-conntrack-tcp-port-reuse.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			news := 0
			for i, f := range in {
				o := c.run(f)
				if o.frame == nil {
					t.Fatalf("packet %d dropped: %v", i, o.reason)
				}
				if o.v.New {
					news++
				}
			}
			if news != 2 || c.ct.Len() != 1 {
				t.Fatalf("%d new connections, %d flows; want 2 and 1 (reopened in place)", news, c.ct.Len())
			}
		},
		// Mid-stream pick-up: no packet of the connection is refused.
		// Some of the injected frames are cut short of their IP total
		// length (the OVS test's hex is truncated): roam drops those as
		// runts, and only those.
		"dpif_ofproto-dpif-conntrack-tcp-pick-up.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			for i, f := range in {
				cut := len(f)-14 < int(binary.BigEndian.Uint16(f[14+2:]))
				o := c.run(f)
				if cut != (o.frame == nil) || (cut && o.reason != packet.ReasonRunt) {
					t.Fatalf("packet %d (cut short %v): forwarded %v, reason %v", i, cut, o.frame != nil, o.reason)
				}
			}
			if c.ct.Len() != 1 {
				t.Fatalf("%d flows, want 1", c.ct.Len())
			}
		},
		// OVS marks exactly one out-of-window data segment invalid; roam
		// checks sequence numbers only for RSTs (a RST out of the window
		// does not close a flow) and passes the data segment.
		"dpif_ofproto-dpif-conntrack-disable-tcp-sequence-checking.pcap": func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			dropped := 0
			for i := 0; i < 9 && i < len(in); i++ {
				if o := c.run(in[i]); o.frame == nil {
					dropped++
				}
			}
			if dropped != 0 {
				t.Fatalf("%d of 9 dropped, want 0 (roam does not check data sequence numbers)", dropped)
			}
		},
		"sys_conntrack-zone-based-timeout-policy.pcap": func(t *testing.T, in [][]byte, _ []string) {
			// A timeout policy: UDP single-direction 3 s (roam: Timeouts).
			c := newOVSCT(t, nat.Options{Timeouts: nat.Timeouts{UDP: 3 * time.Second}}, commitAll)
			c.run(in[0])
			c.now += 2
			if o := c.run(in[1]); o.v.New {
				t.Fatal("flow expired before its 3 s timeout")
			}
			c.now += 4
			c.ct.Expire(c.now, 100)
			if c.ct.Len() != 0 {
				t.Fatalf("%d flows after the 3 s timeout, want 0", c.ct.Len())
			}
		},
		// SCTP: roam's PAT maps only TCP, UDP and ICMP; a record that
		// leaves by PAT gets unsupported_l4 for SCTP.
		"sys_conntrack-sctp-snat-with-port-range.pcap": func(t *testing.T, in [][]byte, _ []string) {
			w := newWorld(t, Options{})
			f := append([]byte(nil), in[0]...)
			copy(f[0:6], gwMAC)
			copy(f[6:12], macB)
			copy(f[14+12:], ipB.AsSlice())
			copy(f[14+16:], remote.AsSlice())
			packet.IPv4(f[14:]).ComputeChecksum()
			w.send("vmB", f)
			w.none("uplink")
			if w.drops("unsupported_l4") != 1 {
				t.Fatalf("drops %v, want unsupported_l4", w.sw.Counters().Drops)
			}
		},
	}
	// IPv4 fragments: roam does not reassemble; it forwards a datagram's
	// fragments by its first fragment's verdict (held until it comes).
	for _, name := range []string{"sys_conntrack-ipv4-fragmentation-out-of-order.pcap", "sys_conntrack-ipv4-fragmentation-with-fragments-specified.pcap",
		"sys_conntrack-ipv4-fragmentation-incomplete-reassembled-packet.pcap"} {
		checks[name] = func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			out := 0
			for _, f := range in {
				if o := c.run(f); o.frame != nil {
					out++
					out += len(c.drain(f))
				}
			}
			if out != len(in) || c.ct.Len() != 1 || c.frags.Held() != 0 {
				t.Fatalf("%d of %d fragments out, %d flows, %d held; want all, 1, 0", out, len(in), c.ct.Len(), c.frags.Held())
			}
		}
	}
	// Overlapping fragments: OVS drops the datagram. roam drops a later
	// fragment that overlaps its first fragment (it could rewrite the
	// transport header the verdict was made on).
	for _, name := range []string{"sys_conntrack-ipv4-fragmentation-overlapping-fragments-by-1-octet.pcap",
		"sys_conntrack-ipv4-fragmentation-overlapping-fragments-by-1-octet-out-of-order.pcap"} {
		checks[name] = func(t *testing.T, in [][]byte, _ []string) {
			c := newOVSCT(t, nat.Options{}, commitAll)
			later := 0
			for _, f := range in {
				var p packet.Parsed
				packet.Parse(f, &p)
				o := c.run(f)
				if p.Frag == packet.LaterFragment && o.frame != nil {
					later++
				}
				if p.Frag == packet.FirstFragment {
					for _, r := range c.drain(f) {
						if r != nil {
							later++
						}
					}
				}
			}
			if later != 0 {
				t.Fatalf("%d overlapping fragments forwarded, want 0", later)
			}
		}
	}
	// IPv6 (and the untrackable IPv6 neighbor solicitation): roam's data
	// path is IPv4; IPv6 frames are dropped and counted (ipv6).
	for _, c := range cases {
		if bytes.Contains([]byte(c.Pcap), []byte("ipv6")) || bytes.Contains([]byte(c.Pcap), []byte("icmpv6")) || bytes.Contains([]byte(c.Pcap), []byte("untrackable")) {
			checks[c.Pcap] = func(t *testing.T, in [][]byte, _ []string) {
				w := newWorld(t, Options{})
				for _, f := range in {
					w.send("vmB", f)
				}
				w.none("uplink")
				if got := w.drops("ipv6"); got != uint64(len(in)) {
					t.Fatalf("ipv6 drops %d, want %d", got, len(in))
				}
			}
		}
	}
	for _, c := range cases {
		t.Run(c.Pcap, func(t *testing.T) {
			in := readPcapFrames(t, filepath.Join(ovsDir, c.Pcap))
			if len(in) != c.NInputs {
				t.Fatalf("%d frames, the case says %d", len(in), c.NInputs)
			}
			check := checks[c.Pcap]
			if check == nil {
				t.Fatalf("no check for case %q", c.Case)
			}
			check(t, in, c.Expected)
		})
	}
}

// TestOVSFragmentationNATPipeline runs OVS's "fragmentation nat" case
// through the whole switch: 172.16.0.2 is a record's public IP (1:1),
// 1.2.3.4 the record. The egress fragments equal OVS's but for the TTL the
// gateway decrements (and the IP header checksum that covers it).
func TestOVSFragmentationNATPipeline(t *testing.T) {
	path := filepath.Join(ovsDir, "dpif_ofproto-dpif-conntrack-fragmentation-nat.pcap")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("OVS vectors not available (%v)", err)
	}
	in := readPcapFrames(t, path)
	want := []string{"450002043170200040117762ac10000101020304a28e15b301fcd9e3", "450000203170003e40119908ac10000101020304"}
	for _, order := range [][]int{{0, 1}, {1, 0}} {
		w := newWorld(t, Options{})
		priv, pub := netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("172.16.0.2")
		w.cfg.PublicIP = netip.MustParseAddr("172.16.0.100")
		w.cfg.Subnets = append(w.cfg.Subnets, Subnet{ID: "subnet-ovs", Prefix: netip.MustParsePrefix("1.2.3.0/24")})
		w.cfg.Groups = append(w.cfg.Groups, Group{ID: "sg-all", Ingress: []Rule{{CIDR: netip.MustParsePrefix("0.0.0.0/0")}}})
		w.cfg.Records = append(w.cfg.Records, Record{ID: "eni-0000ff01", Subnet: "subnet-ovs", IPs: []netip.Addr{priv}, MAC: []byte{2, 0, 0, 0, 0xff, 0x04},
			Groups: []string{"sg-all"}, PublicIPs: []Association{{Public: pub, Private: priv}}, Ports: []string{"vmA2"}})
		w.apply()
		for w.ports["uplink"].Pending() > 0 {
			w.ports["uplink"].Recv(0)
		}
		for _, i := range order {
			w.send("uplink", in[i])
		}
		got := map[bool][]byte{}
		for range in {
			f, ok := w.ports["vmA2"].Recv(time.Second)
			if !ok {
				t.Fatalf("order %v: fragment missing; counters %+v", order, w.sw.Counters())
			}
			got[packet.IPv4(f[14:]).FragField()&0x1fff != 0] = f
		}
		for i, later := range []bool{false, true} {
			f := append([]byte(nil), got[later]...)
			ip := packet.IPv4(f[14:])
			if ip.TTL() != 63 || !ip.ChecksumValid() {
				t.Fatalf("TTL %d (checksum valid %v), want 63", ip.TTL(), ip.ChecksumValid())
			}
			f[14+8] = 64 // undo the router's TTL decrement to compare with OVS (a switch)
			ip.ComputeChecksum()
			wantHex(t, f[14:], want[i])
		}
	}
	_ = tap.Headroom
}
