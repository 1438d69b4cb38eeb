package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"

	"roam/internal/packet"
)

// checkVerdicts checks that every packet got exactly one verdict.
func checkVerdicts(t *testing.T, res *Result) {
	t.Helper()
	var sum uint64
	for _, v := range res.Verdicts {
		sum += v
	}
	if sum != res.Packets {
		t.Errorf("verdicts %v add up to %d, want %d packets", res.Verdicts, sum, res.Packets)
	}
	for _, n := range res.Notes {
		if strings.Contains(n, "do not add up") || strings.Contains(n, "the switch counted") {
			t.Errorf("note: %s", n)
		}
	}
}

// TestReplayShared replays every capture under ../shared/pcaps, with PAT and
// with 1:1 public IPs: none may panic, every packet gets a verdict, and
// unreadable files give errors that name them.
func TestReplayShared(t *testing.T) {
	dir := sharedPcaps(t)
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".pcapng")) {
			files = append(files, p)
		}
		return nil
	})
	if len(files) < 100 {
		t.Fatalf("found %d captures under %s, want the whole collection", len(files), dir)
	}
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		t.Run(rel, func(t *testing.T) {
			c, err := ReadFile(path)
			if strings.HasPrefix(rel, "badfile"+string(filepath.Separator)) {
				if err == nil || !strings.Contains(err.Error(), path) {
					t.Fatalf("got error %v, want one naming %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, one := range []bool{false, true} {
				res, err := Replay(c, ReplayOptions{OneToOne: one, Loop: 2})
				if err != nil {
					t.Fatalf("one-to-one %v: %v", one, err)
				}
				if want := 2 * c.Records(); res.Packets != want {
					t.Errorf("one-to-one %v: got %d packets, want %d", one, res.Packets, want)
				}
				checkVerdicts(t, res)
				// The clock is the capture's: a second replay on a
				// new switch gives the same verdicts.
				again, err := Replay(c, ReplayOptions{OneToOne: one, Loop: 2})
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(res.Verdicts, again.Verdicts) || res.Flows != again.Flows || res.Translations != again.Translations {
					t.Errorf("one-to-one %v: replays differ: verdicts %v then %v, flows %d then %d", one, res.Verdicts, again.Verdicts, res.Flows, again.Flows)
				}
			}
		})
	}
}

// TestReplayTestdata replays the generated captures: every frame is
// forwarded and translated, every flow is tracked, nothing is dropped.
func TestReplayTestdata(t *testing.T) {
	for _, tc := range TestdataCaptures {
		g, err := NewGenerator(tc.Opts)
		if err != nil {
			t.Fatal(err)
		}
		var out, in uint64
		inside := g.Options().Inside
		if err := g.Run(func(_ int64, f []byte) error {
			if inside.Contains(netip.AddrFrom4([4]byte(f[14+12 : 14+16]))) {
				out++
			} else {
				in++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, one := range []bool{false, true} {
			t.Run(tc.File, func(t *testing.T) {
				c, err := ReadFile(filepath.Join("..", "testdata", tc.File))
				if err != nil {
					t.Fatal(err)
				}
				res, err := Replay(c, ReplayOptions{OneToOne: one, Inside: []netip.Prefix{inside}})
				if err != nil {
					t.Fatal(err)
				}
				checkVerdicts(t, res)
				o := g.Options()
				type counts struct {
					Records                               int
					Packets                               uint64
					Flows                                 int
					FlowsCreated, Translations, Forwarded uint64
					DeliveredUplink, DeliveredInside      uint64
				}
				want := counts{
					Records: o.Hosts, Packets: out + in, Flows: o.Flows, FlowsCreated: uint64(o.Flows),
					Translations: out + in, Forwarded: out + in, DeliveredUplink: out, DeliveredInside: in,
				}
				got := counts{
					Records: res.Records, Packets: res.Packets, Flows: res.Flows, FlowsCreated: res.FlowsCreated,
					Translations: res.Translations, Forwarded: res.Forwarded, DeliveredUplink: res.DeliveredUplink, DeliveredInside: res.DeliveredInside,
				}
				if got != want || len(res.Drops) != 0 {
					t.Errorf("one-to-one %v:\n got %+v, drops %v\nwant %+v, no drops", one, got, res.Drops, want)
				}
			})
		}
	}
}

func TestReplayLoop(t *testing.T) {
	c, err := ReadFile(filepath.Join("..", "testdata", "gen_udp.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReplayer(c, ReplayOptions{Loop: 3})
	if err != nil {
		t.Fatal(err)
	}
	res := r.Run()
	checkVerdicts(t, res)
	if res.Packets != 3*640 || res.Forwarded != 3*640 || res.Flows != 64 || res.FlowsCreated != 64 {
		t.Errorf("got packets %d, forwarded %d, flows %d (created %d); want 1920, 1920, 64 (64)", res.Packets, res.Forwarded, res.Flows, res.FlowsCreated)
	}
	// A second run continues the clock: the flows are still there.
	res = r.Run()
	if res.Forwarded != 3*640 || res.FlowsCreated != 0 {
		t.Errorf("second run: got forwarded %d, flows created %d; want 1920, 0", res.Forwarded, res.FlowsCreated)
	}
}

// inboundOnly is a capture of one UDP datagram from a remote to an inside
// host (10.0.0.5), as if nothing had gone out first.
func inboundOnly(t *testing.T) *Capture {
	g, err := NewGenerator(GenOptions{Flows: 1, Proto: "udp", Inside: netip.MustParsePrefix("10.0.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	g.Run(func(_ int64, f []byte) error {
		frames = append(frames, bytes.Clone(f))
		return nil
	})
	c, err := Read("inbound", pcapFile(t, layers.LinkTypeEthernet, frames[1]))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReplayUnsolicited(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    ReplayOptions
		want string
	}{
		{"pat", ReplayOptions{}, "unsolicited"},
		{"one-to-one open", ReplayOptions{OneToOne: true}, "forwarded"},
		{"one-to-one strict", ReplayOptions{OneToOne: true, StrictSG: true}, "sg_ingress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Replay(inboundOnly(t), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			checkVerdicts(t, res)
			if res.Verdicts[tc.want] != 1 {
				t.Errorf("got verdicts %v, want 1 %s", res.Verdicts, tc.want)
			}
		})
	}
}

func TestReplayReservedAddress(t *testing.T) {
	c, err := ReadFile(filepath.Join("..", "testdata", "gen_udp.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	// gen_udp.pcap has 8 hosts, 192.168.0.10 to .17, 80 frames each. In
	// 192.168.0.0/28, .10 to .15 are inside and .15 is the broadcast
	// address: it is renumbered to .9, the highest free address, and all
	// six hosts' frames go through with valid checksums; .16 and .17 are
	// outside hosts, whose frames are not for the gateway.
	res, err := Replay(c, ReplayOptions{Inside: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/28")}})
	if err != nil {
		t.Fatal(err)
	}
	checkVerdicts(t, res)
	if res.Records != 6 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "192.168.0.15 is a reserved address") || !strings.Contains(res.Notes[0], "renumbered to 192.168.0.9") {
		t.Errorf("got %d records, notes %q; want 6 and a note that 192.168.0.15 became 192.168.0.9", res.Records, res.Notes)
	}
	if res.Forwarded != 6*80 || res.Verdicts["not_for_us"] != 2*80 {
		t.Errorf("got verdicts %v, want 480 forwarded and 160 not_for_us", res.Verdicts)
	}
	// In 192.168.0.8/29, .9 is the gateway and .15 the broadcast address,
	// with no free address left for it: no record.
	res, err = Replay(c, ReplayOptions{Inside: []netip.Prefix{netip.MustParsePrefix("192.168.0.8/29")}})
	if err != nil {
		t.Fatal(err)
	}
	checkVerdicts(t, res)
	if res.Records != 5 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "no free address") {
		t.Errorf("got %d records, notes %q; want 5 and a note that 192.168.0.15 has no free address", res.Records, res.Notes)
	}
}

// TestRemapIPv4 renumbers the addresses of an ICMP error and the packet it
// quotes, and checks every checksum.
func TestRemapIPv4(t *testing.T) {
	p := icmpErrorPacket()
	m := map[uint32]uint32{0x0a00000a: 0x0a0000fe, 0xc6336401: 0xc63364fe}
	remapIPv4(p, m)
	in := p[28:]
	if packet.Checksum(p[:20], 0) != 0 || packet.Checksum(p[20:], 0) != 0 || packet.Checksum(in[:20], 0) != 0 ||
		packet.Checksum(in[20:30], pseudoSum(in[12:16], in[16:20], protoUDP, 10)) != 0 {
		t.Fatalf("bad checksum after remap: % x", p)
	}
	if [4]byte(p[12:16]) != [4]byte{198, 51, 100, 254} || [4]byte(p[16:20]) != [4]byte{10, 0, 0, 254} ||
		[4]byte(in[12:16]) != [4]byte{10, 0, 0, 254} || [4]byte(in[16:20]) != [4]byte{198, 51, 100, 254} {
		t.Fatalf("addresses after remap: % x", p)
	}
}

func TestReplayOptionErrors(t *testing.T) {
	c := &Capture{Dropped: map[string]uint64{}}
	for _, o := range []ReplayOptions{
		{Inside: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/31")}},
		{Inside: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16")}},
		{Inside: []netip.Prefix{netip.MustParsePrefix("fd00::/64")}},
		{PublicIP: netip.MustParseAddr("2001:db8::1")},
	} {
		if _, err := NewReplayer(c, o); err == nil {
			t.Errorf("options %+v: got no error", o)
		}
	}
}

// TestRewriteInbound checks the incremental checksum updates against full
// recomputation.
func TestRewriteInbound(t *testing.T) {
	g, err := NewGenerator(GenOptions{Flows: 2, Proto: "mix", Seed: 5, Size: 128})
	if err != nil {
		t.Fatal(err)
	}
	var inbound [][]byte
	g.Run(func(_ int64, f []byte) error {
		if f[14+12] != 10 {
			inbound = append(inbound, bytes.Clone(f[14:14+int(binary.BigEndian.Uint16(f[16:]))]))
		}
		return nil
	})
	inbound = append(inbound, icmpErrorPacket())

	pub := [4]byte{203, 0, 113, 1}
	for i, p := range inbound {
		k, ok := inboundKey(p)
		if !ok {
			t.Fatalf("packet %d: no inbound key", i)
		}
		rewriteInbound(p, pub, 40000)
		hl := int(p[0]&0x0f) * 4
		if packet.Checksum(p[:hl], 0) != 0 || [4]byte(p[16:20]) != pub {
			t.Errorf("packet %d: IPv4 header after rewrite: % x", i, p[:hl])
		}
		l4 := p[hl:]
		switch p[9] {
		case protoTCP, protoUDP:
			if packet.Checksum(l4, pseudoSum(p[12:16], p[16:20], p[9], len(l4))) != 0 || binary.BigEndian.Uint16(l4[2:]) != 40000 {
				t.Errorf("packet %d (%v): L4 after rewrite: % x", i, k, l4[:8])
			}
		case protoICMP:
			in := l4[8:]
			if packet.Checksum(l4, 0) != 0 || packet.Checksum(in[:20], 0) != 0 || [4]byte(in[12:16]) != pub || binary.BigEndian.Uint16(in[20:]) != 40000 ||
				packet.Checksum(in[20:30], pseudoSum(in[12:16], in[16:20], protoUDP, 10)) != 0 {
				t.Errorf("ICMP error after rewrite: % x", l4)
			}
		}
	}
}

func TestReportJSON(t *testing.T) {
	c, err := ReadFile(filepath.Join("..", "testdata", "gen_storm.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(c, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rep := NewReport([]*Result{res, res})
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"packets", "pps", "ns_per_packet", "allocs_per_packet", "flows", "drops", "verdicts", "files"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no key %q: %s", k, b.String())
		}
	}
	if m["packets"].(float64) != 1024 {
		t.Errorf("got packets %v, want 1024", m["packets"])
	}
	b.Reset()
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "total") || !strings.Contains(b.String(), "forwarded") {
		t.Errorf("table lacks the total column or the verdicts:\n%s", b.String())
	}
}

// FuzzReplay loads arbitrary bytes as a capture and replays what loads,
// with PAT and 1:1 NAT: no panic, every packet gets a verdict, conntrack
// stays within its limit.
func FuzzReplay(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "testdata", "gen_established.pcap")); err == nil {
		f.Add(b[:min(len(b), 3000)])
	}
	matches, _ := filepath.Glob(filepath.Join("..", "..", "shared", "pcaps", "*", "*.pcap*"))
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil && len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Read("fuzz", data)
		if err != nil || len(c.Packets) > 500 {
			return
		}
		for _, one := range []bool{false, true} {
			res, err := Replay(c, ReplayOptions{OneToOne: one, MaxFlows: 64, Loop: 2})
			if err != nil {
				if strings.Contains(err.Error(), "EIP pool") {
					continue
				}
				t.Fatal(err)
			}
			checkVerdicts(t, res)
			if res.Flows > 64 {
				t.Fatalf("%d flows, limit 64", res.Flows)
			}
		}
	})
}

// icmpErrorPacket returns an ICMP port unreachable from 198.51.100.1 to
// 10.0.0.10 about a UDP datagram that 10.0.0.10:32768 sent to
// 198.51.100.1:53, with valid checksums throughout.
func icmpErrorPacket() []byte {
	inner := make([]byte, 30)
	inner[0], inner[8], inner[9] = 0x45, 64, protoUDP
	binary.BigEndian.PutUint16(inner[2:], 30)
	copy(inner[12:16], []byte{10, 0, 0, 10})
	copy(inner[16:20], []byte{198, 51, 100, 1})
	binary.BigEndian.PutUint16(inner[10:], packet.Checksum(inner[:20], 0))
	binary.BigEndian.PutUint16(inner[20:], 32768)
	binary.BigEndian.PutUint16(inner[22:], 53)
	binary.BigEndian.PutUint16(inner[24:], 10)
	binary.BigEndian.PutUint16(inner[26:], packet.Checksum(inner[20:30], pseudoSum(inner[12:16], inner[16:20], protoUDP, 10)))
	icmp := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, inner...)
	binary.BigEndian.PutUint16(icmp[2:], packet.Checksum(icmp, 0))
	ip := make([]byte, 20, 20+len(icmp))
	ip[0], ip[8], ip[9] = 0x45, 50, protoICMP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(icmp)))
	copy(ip[12:16], []byte{198, 51, 100, 1})
	copy(ip[16:20], []byte{10, 0, 0, 10})
	binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip, 0))
	return append(ip, icmp...)
}

// TestReplayICMPErrorThroughPAT replays a UDP datagram out and the ICMP
// port unreachable it draws, as captured behind the NAT: the replay
// rewrites the error's outer destination and quoted source to the PAT
// mapping it learned, and the switch translates it back to the host.
func TestReplayICMPErrorThroughPAT(t *testing.T) {
	g, err := NewGenerator(GenOptions{Flows: 1, Proto: "udp", Size: 100, Inside: netip.MustParsePrefix("10.0.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	g.Run(func(_ int64, f []byte) error {
		frames = append(frames, bytes.Clone(f))
		return nil
	})
	out := frames[0]
	ipOut := out[14:]
	quoted := ipOut[:28]
	icmp := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, quoted...)
	binary.BigEndian.PutUint16(icmp[2:], packet.Checksum(icmp, 0))
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 50, protoICMP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(icmp)))
	copy(ip[12:16], ipOut[16:20]) // from the remote
	copy(ip[16:20], ipOut[12:16]) // to the host
	binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip, 0))
	eth := append(append(append([]byte{}, out[6:12]...), RouterMAC[:]...), 0x08, 0x00)
	errFrame := append(append(eth, ip...), icmp...)

	c, err := Read("icmp-error", pcapFile(t, layers.LinkTypeEthernet, out, errFrame))
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	r, err := NewReplayer(c, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.sinks[1].OnWrite = func(f []byte) { got = bytes.Clone(f) }
	res := r.Run()
	checkVerdicts(t, res)
	if res.Forwarded != 2 || got == nil {
		t.Fatalf("got verdicts %v, want both packets forwarded and the error delivered to the host", res.Verdicts)
	}
	// The host gets the error as if no NAT were in between: the quoted
	// datagram is its own, with valid checksums.
	gip := got[14:]
	gl4 := gip[20:]
	if !bytes.Equal(gip[16:20], ipOut[12:16]) || !bytes.Equal(gl4[8+12:8+20], ipOut[12:20]) ||
		!bytes.Equal(gl4[8+20:8+24], ipOut[20:24]) || packet.Checksum(gip[:20], 0) != 0 || packet.Checksum(gl4[:int(binary.BigEndian.Uint16(gip[2:]))-20], 0) != 0 {
		t.Errorf("delivered error % x, want it addressed to the host, quoting its datagram, with valid checksums", got)
	}
}
