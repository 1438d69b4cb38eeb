// Package packet holds byte-slice views of the headers roam handles
// (Ethernet, 802.1Q, ARP, IPv4, TCP, UDP, ICMP), the Internet checksum with
// its incremental update (RFC 1624), and Parse, which validates a frame once
// and decodes the fields the data path needs into a reused Parsed struct.
//
// Views are plain []byte types: a view's accessors assume the slice was
// validated (by Parse or by the view's Valid method) and never allocate.
// Addresses are IPv4 in a uint32 in host order (10.0.0.1 is 0x0a000001), so
// they compare and hash cheaply; Addr and AddrFrom convert at the edges.
package packet
