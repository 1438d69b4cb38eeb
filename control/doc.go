// Package control is roam's network interface virtualization service: the
// records (ENIs) and every other object (subnets, security groups,
// instances and their ports, attachments, public IPs), their validation and
// authorization, the embedded store, the audit log, the HTTP/JSON API on a
// unix socket, and the publication of each new state to the data path.
//
// # Transactions
//
// Every mutating operation is one transaction (see update in tx.go):
//
//	validate  -> authorization, existence, subnet, conflicts, port operational
//	publish   -> ONE new vswitch.Config built from the whole state (Switch.Apply)
//	persist   -> one store commit, based on the state's generation: the changed objects, an audit event
//	install   -> the in-memory state and its indexes
//	effects   -> host effects, after Service.mu is released (effects.go)
//
// A refusal at any step changes nothing anywhere: validation stages changes
// in a txn overlay that is dropped; a data path refusal comes before the
// store is written; a commit that fails after the publication republishes
// the state in force (the data path lives in the process: a crash in
// between loses nothing). Refusals are audited with their error code.
// Validation, publication and the commit run under Service.mu, so the
// operations of one Service are serializable; reads hold it for reading.
// A commit based on a stale generation (another writer of the store) is
// refused by the store; the operation catches up and is validated again,
// at most 5 times, then fails with code Conflict. Lock order: Service.mu,
// then the store's and the switch's own locks.
//
// Host effects — opening a new instance's ports, giving a guest device its
// record's MAC and MTU, QMP hot-plug and unplug, closing ports — run on an
// effects runner with one queue per instance (commit order per instance,
// instances in parallel), without Service.mu, each bounded by a timeout, so
// a VM whose monitor hangs delays only operations on that VM. The
// operation waits for its own effects and returns once its change is in
// force. A record whose new attachment waits for effects keeps its binding
// in force in the data path (a new one has no port) and is republished
// when they complete: an IP is never without an owner and a guest never
// gets frames for a MAC it does not have yet. A definite refusal (QEMU
// refused device_add, a port cannot be opened) refuses the operation with
// nothing left behind (a new instance's ports are opened before its commit;
// a hot-plug refusal is compensated by a commit of the previous values);
// a timeout leaves the attachment "failed" with its status_reason (the
// record "attaching") while the effects are retried with a doubling delay
// (5 retries), then compensated. Check reports such a record until then.
//
// # Store contract
//
// Store (store.go) is what a backend honours; BoltStore (one bbolt file,
// one process) and MemStore (tests) do, and an etcd backend must:
//
//   - Generation: a number that every successful Commit increases (etcd:
//     the revision of the cluster, or of the key prefix), never reused and
//     never going back. Load returns every object (by bucket and key) and
//     the generation they are at, read at one point (etcd: one range read
//     at one revision).
//   - Commit(expected, muts, ev): all or nothing, durable when it returns
//     (etcd: a quorum write), and only if the store is still at expected —
//     etcd: a Txn If(mod revision of the prefix == expected) Then(the puts,
//     deletes and the audit event); otherwise nothing is written and the
//     error wraps ErrConflict (a *ConflictError with both generations). It
//     returns the new generation.
//   - Watch(ctx, from, fn): every change after from, in generation order,
//     without gaps or duplicates, each with its generation, its mutations
//     and its audit event, those already committed first, then new ones
//     from any writer (etcd: Watch with WithRev(from+1) and WithPrevKV on
//     the prefix, one Change per revision). When the changes after from
//     are no longer kept (bbolt keeps the last MaxChanges commits; etcd
//     compaction) it returns ErrCompacted and the caller reloads with
//     Load. It ends with ctx.Err() or with fn's error.
//   - AppendEvent and Events: the audit log, ids increasing.
//
// Every Service runs a watch loop from its state's generation (watch.go):
// a change above it is installed and published to its data path
// (ApplyDelta when only records changed); its own commits are installed
// when made and skipped when they come back. The host effects of a change
// run only on the Service that made it.
//
// A reassign (by record or by private IP) moves the attachment — same
// attachment id, same DeleteOnTermination — to the target instance in the
// same transaction, so the published config changes the record's
// Record.Ports in one step: there is no config in which its IPs have no
// owner, and the record keeps its IPs, MAC, public IPs, groups and every
// tracked flow (conntrack is keyed by addresses, never by ports). A reassign
// of an unattached record attaches it. Reassign by private IP moves the
// record that holds the IP (primary or secondary); when none does, it
// creates a record with that IP as primary in the subnet that contains it,
// owned by the caller, and attaches it, in one transaction.
//
// The published Records slice is a copy of the previous one in which only
// the records the operation touched are rebuilt, so the control plane's
// cost does not depend on the number of flows and depends on the number of
// records only through a memory copy.
//
// # Restart
//
// Open loads the store, reopens the uplink and every instance's ports
// through the PortFactory and republishes. A bbolt commit is atomic and
// durable when it returns, so after kill -9 at any moment the restored state
// is exactly the last committed one (an operation in flight is either wholly
// there or not at all). A port that cannot be reopened is "down": records
// attached to it stay attached but carry no port in the data path, attaching
// to it is refused, detaching from it needs force. A port whose driver
// reports it down (tap.Operationaler) is treated the same for attach and
// detach but stays in the data path, so that it carries traffic again as
// soon as it is back; a stream port counts as operational while it listens,
// since QEMU connects only when the VM starts. Instance views show a stream
// port "down" (error "QEMU disconnected ...") once the QEMU that was
// connected has gone, e.g. when the VM was killed; attaching to it stays
// allowed, for the VM's restart.
//
// # Hot-plug
//
// An instance may name its QEMU monitor: POST /v1/instances {"qmp": PATH}
// (roamctl instance create NAME --qmp PATH), the unix socket of QEMU's
// -qmp unix:PATH,server=on,wait=off; such an instance may have no port.
// Attaching a record to it with no device_index takes its lowest free
// static port that is up, else hot-plugs a NIC: roam creates a stream port
// (stream:DIR/roam-NAME-INDEX.sock, DIR being the monitor's directory) at
// the lowest free hot-plug device index or the next one, listens on it,
// and asks QEMU for netdev_add (type stream, server off, that socket) and
// device_add (virtio-net-pci with the record's MAC), both with id
// roamINDEX, as host effects after the commit, before the record's new
// binding is published; a refusal by QEMU refuses the attach and leaves
// nothing behind. A device_index naming a free hot-plug
// slot, or the next index, plugs there. Detaching, or a reassign away,
// commits and publishes first, then removes the NIC (device_del, waiting
// for the guest to release it: DEVICE_DELETED, then netdev_del) and closes
// the port; so a reassign with hot-plug moves the NIC itself: plugged into
// the target VM, the record switched over in one publication, unplugged
// from the source VM. Hot-plug ports are instance ports with "hotplug":
// true; a free one shows status "unplugged" and trailing free ones are
// removed. After a restart roamd replaces every hot-plugged NIC that has a
// record (device_del, netdev_del, netdev_add, device_add, in the
// background), because QEMU 7.2's stream netdev does not reconnect.
//
// Check (and GET /v1/state's problems) compares the config the switch has
// in force with a full rebuild from the store, record by record: after any
// operation and after any restart, the store and the data path agree.
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
//     record by ID, since owner slots are numbered per process.
//
// The next roamd, the same binary or a new one, opens the store, reopens
// the ports (TUNSETIFF attaches to the persistent devices), imports
// flows.snap and removes it, clears the devices' persistence, and only then
// starts reading frames. A snapshot that is corrupt, truncated or of
// another version is refused with an error in the log, and roamd starts
// with an empty table; flows that expired while roamd was down are not
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
//
// # Authorization
//
// The caller is the uid of the connecting process, read with SO_PEERCRED
// when the connection is accepted. Uid 0 is the administrator and may do
// everything. Other uids:
//
//	subnets, security groups, rules, public IP allocate/release   root only
//	instance create                                                 anyone; the caller owns it
//	instance terminate                                              root or the instance's owner
//	record create, ip reassign that creates a record                anyone; the caller owns the record
//	record delete, modify, grant, revoke                            owners
//	attach                                                          owners and attachers
//	detach                                                          owners and detachers
//	reassign (record or IP)                                         owners, or uids that are both attachers and detachers
//	assign-ip, unassign-ip, eip associate/disassociate              owners and IP setters (of every record involved)
//	conntrack flush                                                 root (all) or the record's owners
//	capture                                                         root
//	reads (list, show, events, stats, conntrack list)               anyone who can connect
//
// The socket is created with mode 0660 and, when the group named by
// --socket-group (default "roam") exists, that group: root and the group's
// members can connect, no one else can. Without the group only root can.
// Add users to the group with "usermod -aG roam USER".
//
// # Errors
//
// Every failure is an *Error with a stable Code (InvalidParameter,
// InvalidSubnet, AddressInUse, NotFound, Unauthorized, IncorrectState,
// DependencyViolation, AddressLimitExceeded, DataPathRefused,
// InternalError) and a Message naming the field and the value. errors.Is
// matches the Err* sentinel of the code. Over the API an error is the body
// {"error": {"code": "...", "message": "..."}} with a 4xx/5xx status; roamctl
// prints it as is with --output json (connection failures use the code
// ConnectionFailed) and exits 1.
//
// # JSON shape
//
// Keys are snake_case; every object has an "id" (an instance's id is its
// name); addresses are strings ("10.0.0.5", "10.0.0.0/24"); times are RFC
// 3339 UTC; lists are never null. Scripts may rely on these keys; new keys
// may be added.
//
//	subnet     {id: "subnet-1a2b3c4d", cidr, gateway, mtu, dns: [], description, tags: {}, created_at}
//	group      {id: "sg-…", name, description, ingress: [rule], egress: [rule], created_at}
//	rule       {id: "sgr-…", direction: "ingress"|"egress", protocol: "all"|"tcp"|"udp"|"icmp"|"N",
//	            from_port, to_port, cidr?, group_id?}
//	           (tcp/udp: destination port range; icmp: type and code, -1 = any)
//	instance   {id: NAME, name, owner: UID, created_at, qmp?, attachments: ["attach-…"],
//	            ports: [{device_index, spec, name, status: "up"|"down"|"unplugged", error?, attachment_id?, eni_id?, hotplug?}]}
//	eni        {id: "eni-…", subnet_id, private_ip, private_ips: [primary, secondaries…], mac,
//	            security_groups: [], source_dest_check, description, tags: {},
//	            status: "available"|"in-use"|"attaching", attachments: [attachment], associations: [association],
//	            permissions: {owners: [UID], attachers: [], detachers: [], ip_setters: []},
//	            flow_budget, flow_policy?: "keep"|"reevaluate"|"reset", created_at}
//	attachment {id: "attach-…", instance_id, device_index, port: SPEC, delete_on_termination,
//	            status: "attached"|"attaching"|"failed", status_reason?, attached_at}
//	association {allocation_id: "eipalloc-…", public_ip, private_ip}
//	eip        {id: "eipalloc-…", public_ip, eni_id?, private_ip?, created_at}
//	event      {id: N, time, uid, operation, target, result: "ok"|CODE, message?}
//	flow       {proto, orig_src, orig_dst, reply_src, reply_dst, state, eni_id, expires}
//	stats      {id: "global"|ENI, packets, packets_in, packets_out, bytes_in, bytes_out,
//	            forwarded, translations, flows, flow_limit?, drops: {reason: n}}
//	flush      {id: "all"|ENI, flushed: n}
//	state      {gen, subnets, security_groups, instances, enis, eips, problems?}   (GET /v1/state)
//
// A record is "attaching", and its new attachment "attaching" (or "failed",
// with status_reason, while retried), while the host effects of its attach
// or reassign run (hot-plug, guest MAC). "detaching" belongs to DESIGN.md's
// vocabulary but is never observed: a detach is in force at its commit.
//
// # Security group changes
//
// Rules and a record's groups are part of the published config. What a
// change of a record's groups (the list, or a group's rules) or of its
// public IPs does to the record's existing flows is its flow_policy
// (PATCH /v1/enis/{id} {"flow_policy": ...}, roamctl eni modify
// --flow-policy), persisted with the record:
//
//	keep        (the default; absent means keep) as in AWS, a tracked flow keeps
//	            the verdict it got when it started; a change applies to new flows
//	reevaluate  flows the new config would not admit (by the rules, or because
//	            their public IP is no longer the record's) are removed when it
//	            is published; their later packets are judged as first packets
//	reset       every flow of the record is removed and each TCP connection gets
//	            a RST at both ends
//
// Flushing a record's conntrack remains the manual way to do the same.
//
// # API
//
//	GET    /v1/subnets | /v1/subnets/{id}        POST /v1/subnets          DELETE /v1/subnets/{id}
//	GET    /v1/security-groups[/{id|name}]        POST /v1/security-groups  DELETE /v1/security-groups/{id}
//	POST   /v1/security-groups/{id}/rules         DELETE /v1/security-groups/{id}/rules/{rule}
//	GET    /v1/instances[/{name}]                 POST /v1/instances        DELETE /v1/instances/{name}
//	GET    /v1/enis?instance_id=&subnet_id=&private_ip=&public_ip=&status=&group=
//	GET    /v1/enis/{id}   POST /v1/enis   PATCH /v1/enis/{id}   DELETE /v1/enis/{id}
//	POST   /v1/enis/{id}/attach|detach|reassign|assign-ips|unassign-ips|grant|revoke
//	POST   /v1/ips/{ip}/reassign
//	GET    /v1/eips[/{id|ip}]   POST /v1/eips   DELETE /v1/eips/{id|ip}   POST /v1/eips/{id|ip}/associate|disassociate
//	GET    /v1/events?after=&limit=     GET /v1/state
//	GET    /v1/conntrack?eni_id=        DELETE /v1/conntrack?eni_id=      GET /v1/stats?eni_id=
//	GET    /v1/capture?port=&count=     (a pcap stream)
//
// Request bodies are the *Input types of this package; unknown fields are
// refused (InvalidParameter naming the field).
//
// # Seams
//
// DataPath is what the service publishes to (*vswitch.Switch satisfies it);
// PortFactory opens the ports that specs name (the daemon's default,
// MemoryPorts, gives in-memory taptest ports; real drivers come in behind
// the same interface); Store keeps the state (BoltStore, and MemStore for
// tests; a shared etcd backend meets the same contract, see Store
// contract); Inspector and
// Capturer give the API the data path's tables, counters and frames.
package control
