// Command roamdemo is `make demo`: it shows roam's main promise live, with
// a real roamd driven by roamctl in network namespaces (see package
// roam/internal/netlab, Demo). It must run as root; it cleans up after itself,
// also on Ctrl-C.
//
//	roamdemo [--roamd bin/roamd] [--roamctl bin/roamctl] [--rate 1000] [--before 4s] [--after 4s]
package main
