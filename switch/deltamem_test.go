package vswitch

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"
)

// TestDeltaMemory: a long run of ApplyDelta, each publishing a fresh copy
// of the Records slice as the control plane does, keeps the heap at the
// size of one config, not of every config published (a record entry
// shared across snapshots must not hold on to the slice it came from).
func TestDeltaMemory(t *testing.T) {
	const n, applies = 2000, 1000
	sw := New(Options{})
	cfg := &Config{Subnets: []Subnet{{ID: "subnet-0", Prefix: netip.MustParsePrefix("10.0.0.0/16")}}}
	for i := 0; i < n; i++ {
		cfg.Records = append(cfg.Records, Record{ID: fmt.Sprintf("eni-%08x", i), Subnet: "subnet-0",
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(1 + i/250), byte(1 + i%250)})},
			MAC: net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)}, FlowPolicy: FlowReevaluate})
	}
	if err := sw.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	for k := 0; k < applies; k++ {
		next := *cfg
		next.Records = slices.Clone(cfg.Records)
		i := k % n
		next.Records[i].SourceDestCheck = !next.Records[i].SourceDestCheck
		if err := sw.ApplyDelta(&next, []string{next.Records[i].ID}); err != nil {
			t.Fatal(err)
		}
		cfg = &next
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	// One Records slice is n × ~200 bytes; every one kept would be
	// applies times that (about 400 MB here).
	if grown := int64(ms.HeapAlloc) - int64(base); grown > 32<<20 {
		t.Errorf("heap grew by %d MiB over %d deltas of %d records", grown>>20, applies, n)
	}
	runtime.KeepAlive(sw)
}
