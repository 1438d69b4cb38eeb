package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roam/bench"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := newApp(&out, &errb).Run(append([]string{"roambench"}, args...))
	return out.String(), err
}

func TestGenMatchesLibrary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.pcap")
	if _, err := run(t, "gen", "--seed", "9", "--flows", "50", "--proto", "udp", "--size", "128", "--rounds", "2", "--inside", "10.2.0.0/24", "-o", path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := bench.WritePcap(&want, bench.GenOptions{Seed: 9, Flows: 50, Proto: "udp", Size: 128, Rounds: 2,
		Inside: mustPrefix("10.2.0.0/24"), Burst: 64}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("roambench gen wrote different bytes from bench.WritePcap with the same options")
	}
}

func TestGenTestdata(t *testing.T) {
	dir := t.TempDir()
	if _, err := run(t, "gen", "--testdata", dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range bench.TestdataCaptures {
		if _, err := os.Stat(filepath.Join(dir, tc.File)); err != nil {
			t.Error(err)
		}
	}
}

func TestReplayJSON(t *testing.T) {
	out, err := run(t, "replay", "--json", "--inside", "10.1.0.0/24", "--loop", "2", "../../testdata/gen_storm.pcap")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, k := range []string{"packets", "pps", "ns_per_packet", "allocs_per_packet", "flows", "drops"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no key %q in %s", k, out)
		}
	}
	if m["packets"].(float64) != 1024 || m["flows"].(float64) != 512 {
		t.Errorf("got packets %v, flows %v; want 1024, 512", m["packets"], m["flows"])
	}
}

func TestReplayTable(t *testing.T) {
	out, err := run(t, "replay", "--one-to-one", "../../testdata/gen_udp.pcap", "../../testdata/gen_storm.pcap")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"packets/s", "ns/packet", "allocs/packet", "forwarded", "total"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.pcap")
	os.WriteFile(bad, []byte("not a capture at all"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "no capture files"},
		{[]string{"replay", "--inside", "10.0.0.0/33", "x.pcap"}, "--inside"},
		{[]string{"replay", "--public-ip", "nope", "x.pcap"}, "--public-ip"},
		{[]string{"replay", "--loop", "0", "x.pcap"}, "--loop"},
		{[]string{"replay", bad}, bad},
		{[]string{"replay", "/does/not/exist.pcap"}, "/does/not/exist.pcap"},
		{[]string{"gen", "--flows", "10"}, "--output"},
		{[]string{"gen", "--proto", "sctp", "-o", "-"}, "sctp"},
		{[]string{"gen", "--inside", "bogus", "-o", "-"}, "--inside"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
