// Package e2e is roam's side-by-side end-to-end benchmark (`make bench-e2e`).
//
// One topology of network namespaces, named after the benchmark's PID
// (rbPID-pub, rbPID-vma, rbPID-vmb and, for the kernel and OVS arms,
// rbPID-rtr), carries the same traffic through three arms in turn:
//
//	roam    roamd with a TAP uplink in pub and TAP ports in vma and vmb,
//	        configured only with roamctl
//	kernel  a router namespace: veth to pub, a bridge with the VMs' veths,
//	        nftables DNAT (public IP -> vmA) and SNAT/masquerade
//	ovs     ovs-vswitchd's userspace datapath (datapath_type=netdev) in the
//	        router namespace, OpenFlow rules with ct(nat) for DNAT and SNAT
//
//	pub 203.0.113.2 --(arm)-- public IP 203.0.113.10 -> vmA 10.0.0.10
//	                                                    vmB (standby)
//
// Per arm and run it measures TCP throughput (iperf3, 1 and 4 streams),
// 64-byte UDP packets per second delivered, new TCP connections per second,
// ping p50/p99 under load, and a reassign under a 2000 pkt/s sequenced UDP
// stream (missing sequence numbers, who answers when) with a TCP connection
// whose socket is moved to vmB by TCP_REPAIR (does it survive?). Medians of
// the runs go to standard output, bench/results/*.json and *.md, and a PNG
// of the reassign.
//
// Every namespace, daemon and helper process the benchmark creates is
// recorded in an Env (a netlab.Lab) and removed on every exit path;
// nothing else is touched. Traffic helpers are this package's Helper
// subcommands, run inside a namespace with `ip netns exec`, each bounded
// by a duration. The roam arm runs roamd and roamctl through netlab, and
// the TCP connection moves with netlab's TCP_REPAIR code, as in the
// end-to-end tests.
//
// The package is part of roam's module; only the picture is drawn by a
// module of its own (bench/e2e/plot, binary roame2e-plot) so that gonum
// stays out of roam's go.mod.
package e2e
