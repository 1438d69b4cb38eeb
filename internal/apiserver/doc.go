// Package apiserver serves roam's control API over HTTP/JSON on a unix
// socket: each route (listed in package api) decodes its request into an
// api type and makes one call of control.Service; the answer is the JSON of
// what the service returned, or {"error": {"code", "message"}} with the
// status api.Error.HTTPStatus gives.
//
// Invariants:
//
//   - Every connection is identified before any request is read: NewServer
//     reads the peer's uid with SO_PEERCRED (PeerPrincipal) and carries it
//     in the request context (WithPrincipal); a request without one is
//     refused with Unauthorized. The uids NewServer is given as admins
//     (the daemon gives its own) are administrators (Principal.Admin).
//     Authorization itself is control's: a write calls the service as the
//     caller, a read goes through the caller's control.Scope.
//   - Bodies are bounded (1 MiB), decoded strictly (unknown fields and
//     wrong types are InvalidParameter naming the field), and a refused
//     request changes nothing (FuzzAPIRequest).
//   - Listen creates the socket with mode 0660 and, when the group exists,
//     the socket group; a stale socket file is replaced, a live one is
//     refused.
//
// The server holds no state of its own besides two optional seams: a
// control.Inspector (conntrack, counters) and a Capturer (pcap streams);
// without them those routes answer IncorrectState.
package apiserver
