// Package api is the wire of roam's control API: every object and input
// type the HTTP/JSON API on roamd's unix socket carries, the error codes and
// the typed error, and the client. It depends on the standard library
// alone, so that roamctl (and any other client) links none of the daemon:
// no store, no switch, no netlink.
//
// The service (package control) stores and serves these types as they are;
// the server (internal/apiserver) translates each route to one call of
// control.Service. Clone gives the deep copies the service hands out, so a
// caller never shares a slice or a map with the committed state.
//
// # Client
//
// NewClient dials the socket for each connection (idle ones are kept);
// Do sends a JSON body and decodes the answer, returning an API failure as
// *Error and a transport failure as a wrapped error; Stream returns a body
// as it arrives (capture); WaitReady polls until roamd answers; Path
// builds a route from escaped elements.
//
// # Errors
//
// Every failure is an *Error with a stable Code (InvalidParameter,
// InvalidSubnet, AddressInUse, NotFound, Unauthorized, IncorrectState,
// DependencyViolation, AddressLimitExceeded, DataPathRefused,
// InternalError, Conflict: the store kept changing under the operation and
// its retries ran out) and a Message naming the field and the value. errors.Is
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
//	stats      {id: "global"|"uid:N"|ENI, packets, packets_in, packets_out, bytes_in, bytes_out,
//	            forwarded, translations, flows, flow_limit?, drops: {reason: n}}
//	flush      {id: "all"|ENI, flushed: n}
//	state      {gen, subnets, security_groups, instances, enis, eips, problems?}   (GET /v1/state)
//
// A record is "attaching", and its new attachment "attaching" (or "failed",
// with status_reason, while retried), while the host effects of its attach
// or reassign run (hot-plug, guest MAC). "detaching" belongs to DESIGN.md's
// vocabulary but is never observed: a detach is in force at its commit.
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
//	       (reassign of a record with several attachments needs attachment_id)
//	GET    /v1/eips[/{id|ip}]   POST /v1/eips   DELETE /v1/eips/{id|ip}   POST /v1/eips/{id|ip}/associate|disassociate
//	GET    /v1/events?after=&limit=     GET /v1/state
//	GET    /v1/conntrack?eni_id=        DELETE /v1/conntrack?eni_id=      GET /v1/stats?eni_id=
//	GET    /v1/capture?port=&count=     (a pcap stream)
//
// Every GET answers what the caller may read (control/doc.go,
// "Authorization"): an administrator reads everything, another uid its own
// records and what hangs off them; an object it may not read is NotFound.
//
// Request bodies are the *Input types of this package; the server
// (internal/apiserver) refuses unknown fields (InvalidParameter naming the
// field) and bodies over 1 MiB.
package api
