// Package world builds small worlds of network namespaces around a real
// roamd and drives it only through roamctl, as a user would: the topology
// shared by the end-to-end tests (package e2e) and by `make demo`
// (cmd/roamdemo).
//
// A Lab owns what it creates and nothing else: namespaces named with its
// prefix (which carries the PID), one temp directory, and the processes it
// started, which it stops by PID. Close undoes all of it and is safe to call
// on a half-built world.
//
//	pub (outside client, 203.0.113.2)
//	 |  eth0: roam's uplink TAP; roam is 203.0.113.1, public IPs 203.0.113.10...
//	roamd
//	 |-- vma eth0 (roam's TAP): the record's IP, e.g. 10.0.0.2
//	 `-- vmb eth0 (roam's TAP): the same IP as a standby
//
// Sockets that a test or the demo opens "inside" a VM are opened by this
// process from an OS thread switched into the namespace (InNS): a socket
// stays in the namespace it was created in, whichever thread uses it later.
// That is also how a TCP connection moves from vmA to vmB (Migrate): the
// socket is frozen with TCP_REPAIR in vmA and recreated in vmB, the
// technique of CRIU.
package netlab
