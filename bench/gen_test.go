package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"roam/internal/packet"
)

func TestGenerateDeterministic(t *testing.T) {
	o := GenOptions{Seed: 7, Flows: 300, Rounds: 2}
	var a, b bytes.Buffer
	if err := WritePcap(&a, o); err != nil {
		t.Fatal(err)
	}
	if err := WritePcap(&b, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two runs with the same options gave different bytes")
	}
	o.Seed = 8
	var c bytes.Buffer
	if err := WritePcap(&c, o); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Fatal("different seeds gave the same bytes")
	}
}

// TestTestdataUpToDate checks that the generated captures in testdata/ are
// what the generator produces now; regenerate them with `go generate
// ./bench`.
func TestTestdataUpToDate(t *testing.T) {
	for _, tc := range TestdataCaptures {
		t.Run(tc.File, func(t *testing.T) {
			want, err := tc.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join("..", "testdata", tc.File))
			if err != nil {
				t.Fatalf("%v (run go generate ./bench)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("testdata/%s (sha256 %x) differs from the generator's output (sha256 %x): run go generate ./bench",
					tc.File, sha256.Sum256(got), sha256.Sum256(want))
			}
		})
	}
}

// TestGenerateFrames decodes every generated frame and checks addresses,
// lengths, checksums, handshake order and IMIX proportions.
func TestGenerateFrames(t *testing.T) {
	o := GenOptions{Seed: 1, Flows: 2000, Hosts: 50, Endpoints: 500, Inside: netip.MustParsePrefix("10.9.0.0/16"), Rounds: 3}
	g, err := NewGenerator(o)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	var tcp, udp int
	for _, f := range g.Flows {
		if f.Proto == 6 {
			tcp++
		} else {
			udp++
		}
	}
	// TCP: SYN, SYN-ACK, ACK, then rounds; UDP: first out, first in, then
	// rounds.
	if want := tcp*(3+2*3) + udp*(2+2*3); len(c.Packets) != want {
		t.Fatalf("got %d frames, want %d (%d TCP and %d UDP flows)", len(c.Packets), want, tcp, udp)
	}
	inside := netip.MustParsePrefix("10.9.0.0/16")
	tuples := map[string]bool{}
	endpoints := map[string]bool{}
	sizes := map[int]int{}
	var eth layers.Ethernet
	var ip layers.IPv4
	var tl layers.TCP
	var ul layers.UDP
	var pl gopacket.Payload
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip, &tl, &ul, &pl)
	parser.IgnoreUnsupported = true
	var decoded []gopacket.LayerType
	syns := 0
	for i, p := range c.Packets {
		if err := parser.DecodeLayers(p.Data, &decoded); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if len(p.Data) < 60 {
			t.Fatalf("frame %d: %d bytes, want at least 60", i, len(p.Data))
		}
		hdr := p.Data[14 : 14+int(ip.IHL)*4]
		if packet.Checksum(hdr, 0) != 0 {
			t.Fatalf("frame %d: bad IPv4 header checksum", i)
		}
		l4 := p.Data[14+20 : 14+int(ip.Length)]
		if packet.Checksum(l4, pseudoSum(ip.SrcIP.To4(), ip.DstIP.To4(), uint8(ip.Protocol), len(l4))) != 0 {
			t.Fatalf("frame %d: bad %v checksum", i, ip.Protocol)
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
		out := inside.Contains(src)
		if out == inside.Contains(dst) {
			t.Fatalf("frame %d: %v -> %v is not between inside and outside", i, src, dst)
		}
		remote := dst
		if !out {
			remote = src
		}
		if !netip.MustParsePrefix("198.51.100.0/24").Contains(remote) && !netip.MustParsePrefix("203.0.113.0/24").Contains(remote) || remote == netip.MustParseAddr("203.0.113.1") {
			t.Fatalf("frame %d: remote %v outside the documentation ranges", i, remote)
		}
		var sp, dp uint16
		if ip.Protocol == layers.IPProtocolTCP {
			sp, dp = uint16(tl.SrcPort), uint16(tl.DstPort)
			if tl.SYN && !tl.ACK {
				syns++
			}
		} else {
			sp, dp = uint16(ul.SrcPort), uint16(ul.DstPort)
		}
		if !out {
			src, dst, sp, dp = dst, src, dp, sp
		}
		tuples[fmt.Sprint(ip.Protocol, src, sp, dst, dp)] = true
		endpoints[fmt.Sprint(src, sp)] = true
		if i >= len(c.Packets)-2*3*o.Flows {
			sizes[len(p.Data)]++
		}
	}
	if len(tuples) != o.Flows || syns != tcp {
		t.Errorf("got %d distinct flows and %d SYNs, want %d and %d", len(tuples), syns, o.Flows, tcp)
	}
	if len(endpoints) != o.Endpoints {
		t.Errorf("got %d inside endpoints, want %d", len(endpoints), o.Endpoints)
	}
	// The data rounds use IMIX: 7:4:1 of 60, 590 and 1514 captured bytes.
	n := float64(2 * 3 * o.Flows)
	for size, want := range map[int]float64{60: 7.0 / 12, 590: 4.0 / 12, 1514: 1.0 / 12} {
		if got := float64(sizes[size]) / n; got < want-0.02 || got > want+0.02 {
			t.Errorf("frames of %d bytes: got share %.3f, want %.3f", size, got, want)
		}
	}
	if len(sizes) != 3 {
		t.Errorf("got frame sizes %v, want only 60, 590 and 1514", sizes)
	}
}

func TestGenerateStorm(t *testing.T) {
	c, err := Generate(GenOptions{Flows: 1000, Storm: true, Proto: "tcp", Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Packets) != 1000 {
		t.Fatalf("got %d frames, want 1000", len(c.Packets))
	}
	for i, p := range c.Packets {
		if len(p.Data) != 60 || p.Data[14+20+13] != tcpSYN {
			t.Fatalf("frame %d: %d bytes, flags %#x; want a 60-byte SYN", i, len(p.Data), p.Data[14+20+13])
		}
		if ts := c.Packets[0].Time + int64(i)*1000; p.Time != ts {
			t.Fatalf("frame %d: time %d, want %d", i, p.Time, ts)
		}
	}
}

func TestGenerateMillionFlowsFitPAT(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	g, err := NewGenerator(GenOptions{Flows: 1 << 20, Storm: true})
	if err != nil {
		t.Fatal(err)
	}
	ep := map[uint64]bool{}
	for _, f := range g.Flows {
		ep[uint64(binary.BigEndian.Uint32(f.Inside[:]))<<16|uint64(f.InsidePort)] = true
	}
	if len(ep) != 16384 {
		t.Fatalf("got %d inside endpoints, want 16384", len(ep))
	}
}

func TestGenOptionErrors(t *testing.T) {
	for _, o := range []GenOptions{
		{Flows: -1},
		{Inside: netip.MustParsePrefix("2001:db8::/64")},
		{Inside: netip.MustParsePrefix("10.0.0.0/30"), Flows: 10},
		{Proto: "sctp"},
		{Size: 20},
		{Flows: 100, Endpoints: 200},
		{Flows: 1 << 20, Endpoints: 100, Hosts: 100},
	} {
		if _, err := NewGenerator(o); err == nil {
			t.Errorf("options %+v: got no error", o)
		}
	}
}
