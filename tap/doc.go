// Package tap holds roam's port drivers: the Port interface through which
// frames enter and leave the data path, and its implementations (TAP devices
// with vnet_hdr offloads, AF_PACKET on existing links, QEMU stream sockets,
// TUN uplinks). tap/memport provides the in-memory twin used by roamd
// --ports memory, pcap replay and tests (tap/taptest re-exports it for
// tests).
//
// Frames are read and written in batches ([]Frame); a driver never allocates
// per frame, and buffers belong to the caller.
//
// Open parses a spec with ParseSpec (the one parser of port specs: roamd
// and the API validate theirs with it; see Spec for the rules) and returns
// the port:
//
//	tap:IFNAME[@NETNS]     Device: a TAP roam creates, IFF_VNET_HDR + TUNSETOFFLOAD
//	netdev:IFNAME[@NETNS]  Netdev: an existing link over AF_PACKET + PACKET_VNET_HDR
//	stream:PATH            Stream: a unix socket QEMU's -netdev stream connects to
//	tun:IFNAME[@NETNS]     TUN: a routed uplink through golang.zx2c4.com/wireguard/tun
//
// Every port implements Stater (frames and bytes each way, drops by
// DropReason) and Operationaler. A port whose device disappears returns
// errors wrapping ErrDeviceGone from Read and Write; the switch marks it down
// and reopens the spec later. A closed port returns errors wrapping ErrClosed.
//
// # Offloads
//
// Frame.GSO carries the virtio-net header's meaning: a super-frame of up to
// 64 KiB (Type, Size, HdrLen) and/or a partial L4 checksum (NeedsCsum,
// CsumStart, CsumOffset, the field holding the pseudo-header sum). TAP and
// netdev ports read and write them whole, so the NAT rewrites one header per
// 64 KiB and super-frames pass between two offload-capable ports uncut. A
// port whose far side cannot take them (a stream socket, a TUN, a port opened
// with Options.NoOffload) resolves them itself with Segment and
// CompleteChecksum; both are exported for the switch. GSOUDPL4 (USO) joins
// the GSO* types of port.go. Incoming virtio-net headers are checked against
// the frame they describe (hdr_len is recomputed, never trusted); a mismatch
// drops the frame and counts DropBadVnetHdr.
//
// # Choices
//
// Queue model: a TAP opened with Options.Queues = N > 1 (IFF_MULTI_QUEUE) is
// one Device with N queues, each its own Port (Device.Queues, the Multiqueue
// interface). The kernel spreads the guest's flows over the queues; roam runs
// one reader per queue, zero-copy into that reader's buffers, and may write
// to any queue. Device's own Read and Write are queue 0's. Queues are not
// multiplexed behind one Read: that would need a copy or a shared lock per
// frame, and one reader would cap the receive rate of all queues.
//
// TUN framing: IP packets are wrapped in a synthetic Ethernet header
// (TUNPeerMAC -> TUNLocalMAC, EtherType from the IP version) on Read; Write
// strips it and drops non-IP frames (DropNotIP). No ARP runs on a TUN uplink.
//
// AF_PACKET batching: recvmmsg and sendmmsg with PACKET_VNET_HDR, not a
// TPACKET_V3 ring. Frames must land in the caller's buffers, so a ring saves
// no copy; a V3 ring releases a block only when it is full or its retire
// timer (>= 1 ms) fires, adding latency at low rates; V1/V2 slots would each
// need 64 KiB to hold a super-frame. PACKET_IGNORE_OUTGOING keeps frames
// leaving through the link (ours among them) out of Read.
//
// Namespaces: with @NETNS the TAP or TUN device, or the AF_PACKET socket, is
// created on a thread switched into that namespace (vishvananda/netns); the
// file descriptor stays bound to it whichever thread uses it later.
// songgao/water is not used: the offload path needs the ioctls anyway, and
// one code path for plain and offloaded TAPs is simpler to keep right.
//
// Stream sockets: the listener exists from Open to Close so that QEMU 7.2,
// which does not retry, always finds it; a reconnecting peer replaces the old
// one. Each frame is a 4-byte big-endian length and the Ethernet frame. Write
// never waits for a peer that stopped reading: what its socket buffer cannot
// take is dropped (DropQueueFull), and a frame cut by the full buffer is
// finished before any other, so the framing survives.
//
// Liveness: Operational is false once a port is closed or its device is gone;
// for a netdev port also while the link is down, for a TUN while it is down,
// for a stream port while no peer is connected. A TAP whose guest side is down
// stays operational (Device.LinkUp tells), and frames written to it are
// dropped and counted (DropLinkDown). Deleting a namespace's name does not
// remove a TAP inside it: roam's queue keeps the namespace alive.
//
// Concurrency: Read must be called from one goroutine at a time (per queue);
// Write is safe for concurrent use on every driver here.
package tap
