package bench

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

//go:generate go run roam/cmd/roambench gen --testdata ../testdata

// TestdataCapture is a small generated capture kept in the repository's
// testdata folder. Tests replay them with exact expected counts, and
// TestTestdataUpToDate checks that the committed files are what the
// generator produces now.
type TestdataCapture struct {
	File string // file name in testdata/
	Opts GenOptions
}

// TestdataCaptures lists the generated captures kept in testdata/.
// Regenerate them with `go generate ./bench` (or `roambench gen --testdata
// testdata`).
var TestdataCaptures = []TestdataCapture{
	{
		// 128 flows, TCP and UDP, handshake then one IMIX exchange per
		// flow, from 16 hosts.
		File: "gen_established.pcap",
		Opts: GenOptions{Seed: 1, Flows: 128, Hosts: 16, Inside: netip.MustParsePrefix("10.0.0.0/24"), Rounds: 1},
	},
	{
		// A storm of 512 new TCP flows (one SYN each) from 64 hosts.
		File: "gen_storm.pcap",
		Opts: GenOptions{Seed: 2, Flows: 512, Hosts: 64, Inside: netip.MustParsePrefix("10.1.0.0/24"), Proto: "tcp", Storm: true},
	},
	{
		// 64 UDP flows from 8 hosts in 192.168.0.0/24, four 64-byte
		// exchanges each.
		File: "gen_udp.pcap",
		Opts: GenOptions{Seed: 3, Flows: 64, Hosts: 8, Inside: netip.MustParsePrefix("192.168.0.0/24"), Proto: "udp", Size: 64, Rounds: 4},
	},
}

// Bytes returns the capture as it should be on disk.
func (t TestdataCapture) Bytes() ([]byte, error) {
	var b bytes.Buffer
	if err := WritePcap(&b, t.Opts); err != nil {
		return nil, fmt.Errorf("%s: %w", t.File, err)
	}
	return b.Bytes(), nil
}

// WriteTestdata (re)writes every capture of TestdataCaptures into dir.
func WriteTestdata(dir string) error {
	for _, t := range TestdataCaptures {
		b, err := t.Bytes()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, t.File), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
