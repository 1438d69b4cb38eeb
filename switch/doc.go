// Package vswitch (folder switch/, since switch is a Go keyword) is roam's
// data path: ports, the batch pipeline, routing by record, the ARP and ICMP
// responders, security groups, source/dest check and counters, over the
// conntrack and NAT of package nat.
//
// # Pipeline
//
// A reader per port reads a batch of frames and runs it through the
// pipeline with one snapshot of the configuration, loaded once per batch:
//
//	parse -> [ARP | ICMP to the gateway] local responders
//	      -> source/dest check -> conntrack lookup
//	      -> (first packet) egress SG, route, NAT decision, ingress SG, create
//	      -> resolve destination by the translated address -> TTL, MTU
//	      -> rewrite (incremental checksums) -> set MACs -> queue per port
//	-> one Write per destination port
//
// The pipeline's stages take the packet they work on explicitly: a batch
// (snapshot, input port, its record, time) and, per frame, a pkt (frame,
// parse result, conntrack hash, TCP segment, verdict) in an array the
// worker reuses from batch to batch. No stage reads "the current packet"
// off the worker; a fragment released from the hold pool is a pkt of its
// own (worker.held). NAT policy (PAT filtering, hairpin, the PAT source)
// is asked of nat.Table.
//
// Every frame gets exactly one verdict, counted: forwarded (some of them
// translated), local (answered by roam) or dropped with a reason
// (packet.Reason). Each package that drops owns its reasons: the parser's
// are in packet, conntrack's and the NAT's in nat (nat/reason.go), the
// switch's own decisions here (reason.go); all count in one array indexed
// by packet.Reason. Fragments that arrive before their first fragment are
// held (Counters.Held) until it comes or they time out.
//
// # Invariants
//
//   - Configuration is an immutable Snapshot behind an atomic.Pointer;
//     Apply builds a new one and swaps it in. A batch never sees half a
//     change. The record-sized indexes (ports, private and public IPs,
//     records, MACs, group members) are split into 256 shards by key
//     hash and copied on write (shards.go): ApplyDelta clones only the
//     shards the changed records touch, so its cost follows the changed
//     records, not all of them (BenchmarkApplyDelta at 10K and 100K).
//   - Flows are keyed by addresses and ports, never by switch ports: the
//     destination port of every packet is resolved from the snapshot in
//     force (private IP -> record -> attachment port). Moving a record to
//     another port (reassign) is one Apply: O(1) in flows, no conntrack or
//     NAT entry is touched, and the very next batch delivers to the new
//     port.
//   - The established-flow path does not allocate and takes no global
//     lock: one conntrack shard lock (two for the reply direction), a
//     per-destination-port write lock once per batch, and atomic counters
//     added once per batch.
//
// # Choices where the design is silent
//
//   - Routing is by IP only: roam answers ARP for the subnet gateway (the
//     first address after the network address) and for every record IP in
//     the asker's subnet with that record's MAC; it never floods and never
//     learns MACs for forwarding. Frames are accepted whatever their
//     destination MAC. Broadcast and multicast IP traffic is dropped
//     (not_for_us), DHCP aside.
//   - Same-subnet traffic keeps its TTL and carries the sender's record
//     MAC; traffic that crosses the gateway (between subnets, to or from the
//     uplink) has its TTL decremented and the gateway MAC as source. TTL
//     expiry is answered with ICMP time exceeded, DF packets over the next
//     hop's MTU with fragmentation needed.
//   - After a reassign, the port the record left may, for DrainGrace
//     (500 ms), still send frames of the record's established flows: what
//     the old VM had in flight at the swap is not lost. Nothing is
//     delivered to that port after the swap and no new flow can start from
//     it; a port that gets another record stops draining at once.
//   - A record with several attachments has each flow pinned to one of
//     them by rendezvous hashing of the flow: adding or removing an
//     attachment moves only the flows of the one removed.
//   - Security groups are evaluated on a flow's first packet (egress of the
//     sender, ingress of the receiver) and the verdict is cached as the flow
//     itself; return traffic is always allowed. What a change of a
//     record's groups (the list or their rules) or public IPs does to its
//     existing flows is the record's FlowPolicy: keep (the default, as AWS
//     keeps tracked flows), reevaluate (flows the new snapshot would not
//     admit are removed once it is in force; their later packets are
//     judged as first packets) or reset (every flow of the record is
//     removed and each TCP connection gets a RST at both ends, with the
//     sequence number the peer expects). A flow is the record's when one
//     of its IPs is an end of it. An expired flow that is revived is
//     evaluated again.
//   - ExportFlows and ImportFlows save and restore the conntrack table
//     with the record each flow is charged to, for a graceful restart of
//     roamd (see internal/daemon).
//   - PAT filtering is address-and-port-dependent by default (as Linux
//     conntrack); Options.AddressDependentFiltering and
//     Options.EndpointIndependentFiltering switch to address-dependent or
//     endpoint-independent filtering (RFC 4787 REQ-8; roamd's filtering
//     key). A hairpin to another record's PAT mapping needs
//     endpoint-independent filtering.
//   - A record's first packet that no session can be made for (its
//     groups deny it, PAT has no port left, the table or the record's
//     budget is full) is answered with ICMP destination unreachable, code
//     13, from the subnet's gateway (RFC 5508 REQ-8); PAT exhaustion is
//     also logged, at most once every 10 s.
//   - Every ICMP error roam originates is charged to the record whose
//     packet caused it, or to that packet's source address on the uplink
//     (a bounded table of 1024 buckets), and rate-limited there
//     (Options.ICMPSourceRate, 10/s in bursts of 20 by default), then by a
//     global cap of last resort (Options.ICMPErrorRate, 1000/s);
//     fragmentation-needed has buckets of its own and, for a record
//     within its share, ignores the global cap, so that no one's flood
//     makes a path-MTU black hole for another (icmplimit.go; the switch's
//     and each record's Counters.ICMPSent and ICMPLimited).
//   - ICMP errors whose ICMP checksum or embedded IP header checksum does
//     not verify are dropped (bad_checksum, RFC 5508 REQ-3).
//   - DHCP is answered at most Options.DHCPRate times a second per port
//     (10 by default); the rest are dropped as dhcp_rate_limited.
//   - A later fragment that overlaps its datagram's first fragment (and
//     could rewrite the transport header the verdict was made on, RFC
//     1858 and RFC 3128) is dropped as frag_overlap.
//   - The uplink learns a neighbour's MAC (the upstream's, an on-link
//     host's) only from an answer to roam's own ARP request while it is
//     outstanding (3 s), as the kernel's neighbour table does: IPv4 frames
//     and unsolicited replies teach nothing, a gratuitous ARP never creates
//     an entry and moves a resolved one at most once a second (logged), and
//     what is refused is dropped as arp_unsolicited (logged at most once a
//     second). An entry is asked for again once it is 30 s old and still
//     used, and dropped after 5 s of unanswered requests. While a request
//     is outstanding, up to 3 frames per address (256 KiB in all) wait for
//     the answer and go out with it, as the kernel's arp_queue; frames that
//     do not fit, or whose request expires, are dropped as
//     neighbor_unresolved. Without Upstream or UpstreamMAC, off-link
//     destinations have no next hop.
package vswitch
