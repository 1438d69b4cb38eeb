// Package daemon is roamd: it reads the configuration (Config: the flags
// of DESIGN.md, which a config file may also set with the same keys), opens
// the store, restores the service (package control) onto a new switch,
// serves the control API (internal/apiserver) on the socket and the
// Prometheus metrics when configured, and drives conntrack expiry. Command
// roamd only wires its flags and signals to Start, Reload, Handover and
// Shutdown.
//
// Invariants:
//
//   - Start serves the API last: a client that got an answer finds the
//     daemon wholly started (metrics included).
//   - Reload (SIGHUP) changes the log level and the public side in place
//     (through control.Service.SetGateway, which refuses a pool that would
//     strand an allocated public IP); the other keys are reported and take
//     effect at the next start.
//   - Shutdown stops serving (requests in progress finish), then closes the
//     service, the switch and the store: every operation that returned was
//     committed.
//   - Store: control.BoltStore in the state directory by default;
//     control.EtcdStore with store = etcd (etcd-endpoints, etcd-prefix),
//     shared with the other roamds of a cluster.
//   - Ports: DriverPorts (the real drivers of package tap) by default;
//     MemoryPorts (tap/memport) with --ports memory. Every port factory is
//     wrapped by a CaptureHub, which copies frames to capture sessions at
//     the cost of one atomic load per batch when there is none.
//   - The uid roamd runs as administers it, as uid 0 does (passed to
//     apiserver.NewServer): a user running roamd --ports memory without
//     root manages what they started; the audit log names the real uid.
//   - mss-clamp (Config.MSSClamp, 0 = off) is the switch's MSS clamp on
//     forwarded SYNs; it takes effect at start.
//   - icmp-rate (Config.ICMPRate, 10 by default) is the ICMP errors a
//     record, or a source on the uplink, may cause per second
//     (vswitch.Options.ICMPSourceRate); it takes effect at start.
//   - Metrics (metrics.go) count operations and latencies (fed by
//     control.Options.Observe) and read the service's Census and the
//     switch's counters at scrape time.
//
// # Graceful restart: flows are kept
//
// A restart or an upgrade of roamd keeps every tracked flow, NAT binding and
// PAT port (in use or on its REQ-8 hold), by a conntrack snapshot plus
// persistent TAP devices. With keep-flows (the default) SIGTERM or SIGINT
// runs Daemon.Handover instead of Shutdown:
//
//  1. the API stops (operations in progress finish);
//  2. every tap: port, the uplink included, gets TUNSETPERSIST, so that
//     closing it leaves the device with the guest side's addresses, routes
//     and neighbours in place (frames the guest sends meanwhile are
//     dropped by the kernel: that is the downtime);
//  3. the ports are closed and the readers waited for: the table no longer
//     changes;
//  4. the table is written to FlowsFile (flows.snap) in the state
//     directory: tmp file, fsync, rename. The format (vswitch.ExportFlows,
//     nat.Snapshot) is versioned and checksummed, and names each flow's
//     record by ID, since owner slots are numbered per process;
//  5. every record's counters (packets and bytes in and out, drops by
//     reason) are written to CountersFile (counters.snap), the daemon's
//     own JSON file keyed by record ID, the same way.
//
// The next roamd, the same binary or a new one, opens the store, reopens
// the ports (TUNSETIFF attaches to the persistent devices), imports
// flows.snap and removes it, adds counters.snap to the counters of the
// records that still exist and removes it, clears the devices'
// persistence, and only then starts reading frames. A snapshot that is
// corrupt, truncated or of another version is refused with an error in the
// log, and roamd starts with an empty table (counters.snap: its counters
// start over); flows that expired while roamd was down are not
// imported. After kill -9 there is no snapshot: the devices go with the
// process and the table starts empty (the state in the store is intact).
// netdev: ports are existing links and are kept as they are; stream: ports
// (QEMU reconnects) and tun: uplinks are not kept. Measured with a 1000
// pkt/s UDP stream and a TCP connection per guest through a public IP and
// through PAT (TestPrivilegedRestartKeepsFlows): the data path stops for
// some 40 to 200 ms (the new process's start), the UDP streams lose what
// was sent in that window, the TCP connections carry on without a reset,
// and conntrack before and after are the same. keep-flows = false removes
// the devices on SIGTERM as before.
package daemon
