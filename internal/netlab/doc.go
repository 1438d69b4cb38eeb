// Package netlab is roam's one harness for system tests: network
// namespaces around a real roamd driven only through roamctl, as a user
// would. The end-to-end tests (e2e), the QEMU tests (qemu), the tests of
// roamctl (cmd/roamctl), `make demo` (cmd/roamdemo, Demo) and the
// side-by-side benchmark (bench/e2e) all build on it.
//
// What it has, by file:
//
//	lab.go       Lab: namespaces named with a prefix that carries the PID
//	             (UniquePrefix), commands run in them, Reset and Close
//	proc.go      Proc: background children (logged, in memory, or piped
//	             line by line), SIGKILLed if this process dies, stopped by PID
//	roamd.go     Build (roamd and roamctl from this tree), StartRoamd (waits
//	             until roamctl gets an answer), Ctl, CtlInto, CtlID, CtlError
//	link.go      netlink handles in a namespace (vishvananda/netlink):
//	             WaitLink, LinkMAC
//	netns.go     InNetns (tap.InNetns), sockets opened inside a namespace
//	stream.go    UDPStream and UDPEcho (datagrams with sequence numbers:
//	             which were answered, by whom, when), the TCP byte pattern
//	             (Sender, Receiver), TCPEcho
//	repair.go    TCP_REPAIR: Freeze, Thaw, Resume, Migrate; TCPState
//	             crosses processes as JSON
//	need.go      Missing: why this process cannot build a lab (a skip reason)
//	topology.go  the standard world: addresses, StartPublic, AddVM,
//	             ConfigureGuest, Pair (SetupPair, Reassign), KernelDrops
//	demo.go      Demo, the live `make demo`
//
// A Lab owns what it creates and nothing else: namespaces named with its
// prefix, one temp directory, and the processes it started, which it
// stops by PID. Close undoes all of it and is safe to call on a half-built
// lab; Reset undoes the namespaces and processes only, so the benchmark
// builds the same names again for its next arm. Children are started from
// one OS thread that lives as long as the Lab, so that Pdeathsig kills
// them when this process ends, however it ends.
//
// The standard world of the e2e tests and the demo:
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
// socket is frozen with TCP_REPAIR in vmA and recreated in vmB, silent in
// repair mode until the reassign is done, then resumed with a window
// probe: the technique of CRIU. The benchmark does the same across
// processes: its helper in vmA freezes, the one in vmB thaws from the
// JSON state on another address and resumes on a word from the
// orchestrator.
//
// netlab drives roamd and roamctl as processes and through the socket
// only; it never imports roam/control, so a test built on it tests the
// binaries a user runs.
package netlab
