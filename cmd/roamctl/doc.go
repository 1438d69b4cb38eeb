// Command roamctl is the command line of roam's control API: it talks to
// roamd over its unix socket (--socket, or $ROAM_SOCKET).
//
//	roamctl subnet create 10.0.0.0/24
//	roamctl instance create vm1 --port tap:vm1 --port stream:/run/vm1.sock
//	roamctl instance create vm3 --qmp /run/vm3/qmp.sock    # attach hot-plugs a NIC
//	roamctl eni create --subnet subnet-1a2b3c4d --sg web
//	roamctl eni attach eni-0a1b2c3d --instance vm1
//	roamctl eni reassign eni-0a1b2c3d --instance vm2
//	roamctl ip reassign 10.0.0.5 --instance vm2
//	roamctl ip reassign 10.0.0.5 --instance vm3 --attachment attach-…  # one of several attachments
//	roamctl eip allocate && roamctl eip associate eipalloc-… --eni eni-0a1b2c3d
//	roamctl -o json events
//
// With --output json every command prints the object or list it created,
// changed or read (snake_case keys, an "id" on every object), and every
// failure prints {"error": {"code": ..., "message": ...}}; the shape is
// documented in package api, the only roam package roamctl imports. A
// failure exits with status 1. What a command reads depends on who runs
// it: an administrator (root, or the uid roamd runs as) reads everything,
// another uid its own records (owned or granted) and what hangs off them
// (conntrack list, stats, events); see package control, "Authorization".
// Flags may
// follow positional arguments. "roamctl completion bash" prints a completion
// script.
package main
