package packet_test

import (
	"testing"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

func TestNoAllocs(t *testing.T) {
	frames := seedFrames()
	var p packet.Parsed
	if n := testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			packet.Parse(f, &p)
		}
	}); n != 0 {
		t.Errorf("Parse: got %v allocs per run, want 0", n)
	}
	b := frames[1]
	if n := testing.AllocsPerRun(100, func() {
		ip := packet.IPv4(b[14:34])
		ip.SetSrc(ip.Src() + 1)
		_ = packet.Sum(b[34:], 0)
	}); n != 0 {
		t.Errorf("checksums: got %v allocs per run, want 0", n)
	}
}

func benchParse(b *testing.B, frame []byte) {
	var p packet.Parsed
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if packet.Parse(frame, &p) != packet.ReasonNone {
			b.Fatal("parse failed")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

func BenchmarkParse(b *testing.B) {
	b.Run("tcp64", func(b *testing.B) { benchParse(b, packettest.Frame(tcpSpec(packet.TCPAck, 10))) })
	b.Run("udp", func(b *testing.B) { benchParse(b, packettest.Frame(udpSpec(18))) })
	b.Run("icmp-error", func(b *testing.B) {
		benchParse(b, packettest.ICMPError(3, 3, router, apPriv.Addr(), packettest.IP(udpSpec(12)), 0, 0))
	})
}

func BenchmarkChecksum(b *testing.B) {
	buf := make([]byte, 1460)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		packet.Sum(buf, 0)
	}
}

func BenchmarkUpdate32(b *testing.B) {
	b.ReportAllocs()
	cs := uint16(0x1234)
	for i := uint32(0); b.Loop(); i++ {
		cs = packet.Update32(cs, i, i^0xdeadbeef)
	}
	_ = cs
}
