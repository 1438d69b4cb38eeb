// Package bench is roam's benchmark and replay toolkit: it loads pcap and
// pcapng captures into memory (normalising every supported link type to
// Ethernet), generates deterministic captures of its own (IMIX frame sizes,
// many flows, new-flow storms), and replays frames through the in-process
// switch (vswitch) on a virtual clock taken from the capture's timestamps,
// reporting packets per second, nanoseconds and allocations per packet,
// flows, NAT translations, verdicts and drops by reason.
//
// Invariants:
//
//   - Loading never panics on arbitrary bytes: an unreadable file gives an
//     error that names the file and the problem; a truncated last record
//     ends the capture with a note.
//   - Every packet of a capture gets exactly one verdict: either the switch's
//     or one of the harness's own (unsupported_linktype, bad_link_header,
//     frame_too_large), so the verdict counts add up to the packet count.
//   - The generator is a pure function of its options: the same options give
//     the same bytes.
//   - Replay timing covers Switch.Process only: file IO happens before, and
//     the harness's own per-batch work (copying frames into reusable buffers,
//     rewriting inbound destinations to learned NAT mappings) is not timed.
//
// Running:
//
//	roambench replay [--inside CIDR]... [--public-ip IP] [--one-to-one] [--loop N] [--json] FILE...
//	roambench gen --flows 100000 --size 64 --rounds 10 -o /tmp/g.pcap
//	go generate ./bench     # regenerate the captures in testdata/
//	go test ./bench -run XXX -bench . -benchtime 2s
//	go test ./bench -run XXX -fuzz FuzzRead -fuzztime 60s    # also FuzzReplay
//
// Replay semantics (ports, records, NAT rewriting of inbound frames
// captured behind the NAT, the virtual clock) are described on Replayer.
package bench
