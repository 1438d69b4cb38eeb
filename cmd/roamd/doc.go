// Command roamd is roam's daemon: it restores the committed state, runs the
// switch and serves the control API on a unix socket. It only wires: every
// decision lives in internal/daemon (and the service in package control).
//
//	roamd [--config FILE] [--state-dir DIR] [--socket PATH] [--socket-group GROUP]
//	      [--uplink SPEC] [--public-cidr CIDR] [--public-ip IP] [--upstream IP|MAC]
//	      [--metrics ADDR] [--log-level LEVEL] [--log-format text|json]
//	      [--ports drivers|memory] [--no-sync] [--keep-flows=false]
//	      [--filtering MODE] [--mss-clamp BYTES] [--icmp-rate N]
//	      [--store bolt|etcd] [--etcd-endpoints URL[,URL...]] [--etcd-prefix PREFIX]
//
// Configuration comes from flags and, with --config FILE, from a file with
// the same keys, one "key = value" per line ("#" starts a comment); flags
// given on the command line win:
//
//	state-dir   = /var/lib/roam
//	socket      = /run/roam/roamd.sock
//	uplink      = tap:uplink0
//	public-cidr = 198.51.100.0/24
//	public-ip   = 198.51.100.1
//	metrics     = 127.0.0.1:9090
//	log-level   = info
//
// --store bolt (the default) keeps the objects in state.db in the state
// directory, for this roamd alone; --store etcd keeps them in etcd at
// --etcd-endpoints, keys under --etcd-prefix (default /roam/), shared by
// every roamd that names the same etcd and prefix: each follows the
// others' changes. The etcd server must accept a commit's transaction
// (its --max-txn-ops bounds the objects one operation writes).
//
// Root and the uid roamd runs as administer it (a user may run roamd
// --ports memory without root and manage it with roamctl). The socket gets mode 0660 and the group --socket-group (default "roam")
// when that group exists, so that its members can use roamctl; otherwise
// only root can. SIGHUP re-reads the file and applies the log level and the
// public side (public-cidr, public-ip, upstream) in place; the other keys
// take effect at the next start. SIGTERM and SIGINT stop roamd cleanly:
// requests in progress finish, then the ports and the store are closed.
// With keep-flows (the default) that stop is a handover to the next roamd:
// TAP devices are made persistent and every flow is saved to flows.snap in
// the state directory, which the next roamd imports before it reads a frame
// (see internal/daemon, "Graceful restart"); --keep-flows=false removes the
// devices instead.
package main
