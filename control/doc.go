// Package control is roam's network interface virtualization service: the
// records (ENIs) and every other object (subnets, security groups,
// instances and their ports, attachments, public IPs), their validation and
// authorization, the embedded store, the audit log, and the publication of
// each new state to the data path. It is a library: it serves no socket and
// reads no config.
//
// # What lives where
//
//	api/                the wire: object and *Input types, error codes, api.Error, the client
//	control/            the service: model (aliases of api's types), validation, authorization,
//	                    transactions, operations, hot-plug, publishing, the store, the audit log
//	internal/apiserver  HTTP routes translating requests to Service calls; the socket, SO_PEERCRED
//	internal/daemon     roamd: config, start-up, reload, handover, metrics, capture
//	internal/qmp        the QEMU monitor client hot-plug uses
//
// The object types (Subnet, ENI, ...) and the *Input types are api's,
// named here by type aliases so that control reads as before; the JSON
// shape, the routes and the error codes are documented in package api.
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
// one process), MemStore (tests) and EtcdStore (store_etcd.go over
// internal/etcdstore: etcd, shared by several roamds) do:
//
//   - Generation: a number that every successful Commit increases by one
//     (EtcdStore: a counter key the commit's transaction compares and
//     sets), never reused and never going back. Load returns every object
//     (by bucket and key) and the generation they are at, read at one
//     point (etcd: range reads at one revision).
//   - Commit(expected, muts, ev): all or nothing, durable when it returns
//     (etcd: a quorum write), and only if the store is still at expected
//     (EtcdStore: a Txn If(gen == expected) Then(the puts, deletes, gen,
//     the change record and the audit event)); otherwise nothing is
//     written and the error wraps ErrConflict (a *ConflictError with both
//     generations). It returns the new generation.
//   - Watch(ctx, from, fn): every change after from, in generation order,
//     without gaps or duplicates, each with its generation, its mutations
//     and its audit event, those already committed first, then new ones
//     from any writer (EtcdStore: a range read of the change records after
//     from, then an etcd watch on them from the next revision). When the
//     changes after from are no longer kept (each backend keeps the last
//     MaxChanges commits) it returns ErrCompacted and the caller reloads
//     with Load. It ends with ctx.Err() or with fn's error.
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
// of an unattached record attaches it. A record with several attachments
// moves only the one named by attachment_id (roamctl --attachment
// ATTACH-ID); without it such a reassign is refused with InvalidParameter,
// naming the flag and listing the attachment ids; with one attachment it
// moves that one. Reassign by private IP moves the
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
// # Authorization
//
// The caller is a Principal: the uid of the connecting process, which the
// API server (internal/apiserver) reads with SO_PEERCRED when the connection
// is accepted. Uid 0 is the administrator and may do everything; so is a
// Principal with Admin set, which the API server sets for the uid roamd
// runs as (apiserver.NewServer's admins), so that roamd started by a user
// without root (--ports memory) is administered by that user; "root" below
// means any administrator. Other uids:
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
//	reads (list, show, events, stats, conntrack list)               scoped, see below
//
// Reads are scoped (scope.go, Service.As): an administrator reads
// everything; any other caller reads the records whose permission lists
// (owners, attachers, detachers, ip setters) name it, their attachments and
// associations, the public IPs associated with them, their conntrack
// entries and counters (without a record, the caller's records' entries,
// and the sum of their counters as "uid:N"), and the audit events it
// caused or whose target is one of its records (by id, private or public
// IP, or allocation). Subnets and security groups are readable by all (a
// VPC-wide describe: one needs them to create a record, and they name no
// tenant); instances too, without the attachments of records the caller
// may not read. GET /v1/state is the same scoped view, without problems.
// A record or allocation the caller may not read answers NotFound with the
// message of one that does not exist: a read does not tell a stranger's
// object from none. Mutating operations keep Unauthorized (naming the
// caller and the object it named).
//
// The socket is created with mode 0660 and, when the group named by
// --socket-group (default "roam") exists, that group: root and the group's
// members can connect, no one else can. Without the group only root can.
// Add users to the group with "usermod -aG roam USER".
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
// # Errors
//
// Every failure is an *Error (api.Error) with a stable Code and a Message
// naming the field and the value; errors.Is matches the api.Err* sentinel of
// the code. The constructors (errorf, invalid, notFound, internal) are
// control's.
//
// # Graceful restart
//
// PersistDevices sets or clears TUNSETPERSIST on every tap: port the
// service holds; internal/daemon's Handover uses it to keep the devices,
// and every flow, for the next roamd (see that package).
//
// # Seams
//
// DataPath is what the service publishes to (*vswitch.Switch satisfies it);
// PortFactory opens the ports that specs name (internal/daemon gives the
// real drivers, or in-memory tap/memport ports with --ports memory); Store
// keeps the state (BoltStore, and MemStore for tests; a shared etcd backend
// meets the same contract, see Store contract); Inspector gives FlushFlows and the API the data
// path's tables and counters. Census, Gateway, Dump, ResolvePort and
// AuthorizeCapture are what the daemon and the API server read.
//
// Tests: the HTTP server imports control, so control's tests that drive the
// service through the API (concurrency, socket benchmarks) reach it through
// serve_ext_test.go (package control_test), which sets ServeAPI.
package control
