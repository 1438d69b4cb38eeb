// Package nat is roam's connection tracking and network address
// translation: the conntrack table, 1:1 and PAT translation, port
// allocation, TCP state, timeouts, ICMP error translation and checksums.
//
// # The table
//
// Table tracks every flow once, keyed by a packed, pointer-free Tuple: the
// flow's original tuple (as its first packet was seen) and its reply tuple
// (what comes back after translation). A packet whose tuple equals one of
// them belongs to the flow, in that direction, and is rewritten into the
// other tuple reversed. Flows are keyed by addresses and ports only, never
// by the switch's ports or attachments: moving a record to another port
// changes no entry (DESIGN.md, invariant 1).
//
// The table is 64 shards. A flow lives in the arena of the shard its
// original tuple hashes to; each tuple has an entry in the open-addressing
// index of the shard it hashes to (8 bytes: tag, direction, reference).
// Lock order: shards in ascending index, then a PAT pool's lock. A flow's
// tuples never change while it is indexed, so an index shard's lock is
// enough to compare them; its state is changed only under its owner shard's
// lock. A flow costs 60 bytes of arena plus two index slots kept under half
// full (16 to 32 bytes): about 115 bytes per flow at 1M flows, as
// BenchmarkTrack reports; small tables pay more, as arenas grow by chunks
// (of 64 to 4096 flows, by the table's limit) per shard.
//
// # Limits
//
// A global limit and a per-owner (per-record) budget bound the table. When
// either is reached, new flows are refused and counted; established flows
// are never evicted (expired ones are reclaimed first). Neither count ever
// reads above its limit, even while new flows race for the last places.
// Expiry is driven by the time the caller passes in (Unix seconds): the
// table never reads a clock, so pcap replay and tests are deterministic.
//
// A flow that expired but was not swept yet is dead: a packet in its
// original direction starts it again with the same translation, a packet
// in its reply direction removes it and is then judged as a first packet
// by the caller (unsolicited through PAT, whose mapping went with it).
//
// # Translation
//
// PAT uses endpoint-independent mapping with port preservation, port range
// (<1024, ≥1024) and parity preservation and a bounded search that strides
// across the range (port preservation fills long runs of ports); a freed
// port is held for 120 s after its mapping ended (RFC 6888 REQ-8), except
// one that a refused flow took and never used. ICMP query identifiers are
// mapped like ports. ICMP errors are translated by their embedded datagram
// (RFC 5508): embedded and outer headers and all checksums. Fragments carry
// the first fragment's translation (Frags); a later fragment that
// overlaps the first is refused (Frags.LookupAt: ReasonFragOverlap).
//
// PAT policy is the table's: its port allocator is not exported, and the
// data path asks the table. OutboundPAT sets a new flow to leave through
// a PAT address; InboundPAT and HairpinPAT decide a first packet to a PAT
// address from outside and from inside by PATOptions.Filtering (RFC 4787
// REQ-8: FilterAddressPort, the default, admits none; FilterAddress admits
// a remote address some flow of the mapping has, for which PAT counts each
// mapping's flows per remote address; FilterEndpointIndependent admits
// any, and is the only one that lets a hairpin through). PATMapping and
// PATInUse read the mappings.
//
// # TCP
//
// TCP state follows Linux conntrack's states (see the diagram in tcp.go):
// a flow starts on a SYN or, for a connection under way, a bare ACK
// (mid-stream pick-up); a RST closes it only when its sequence number is in
// the window; a SYN on a TIME_WAIT or CLOSE flow reopens it in place with
// the same translation (port reuse after close).
//
// The reasons nat refuses or drops for (table_full, flow_budget,
// nat_ports_exhausted, unsolicited, fragments...) are declared here, in
// nat's range of packet.Reason (reason.go); the switch counts them.
package nat
