package tap

import (
	"fmt"
	"net"
	"strings"
)

// Kinds of port spec, the part before the colon.
const (
	KindTAP    = "tap"
	KindNetdev = "netdev"
	KindStream = "stream"
	KindTUN    = "tun"
)

// Spec is a parsed port spec:
//
//	tap:IFNAME[@NETNS]     a TAP device roam creates (in NETNS when given)
//	netdev:IFNAME[@NETNS]  an existing link, attached by AF_PACKET
//	stream:PATH            a unix stream socket for QEMU -netdev stream
//	tun:IFNAME[@NETNS]     a routed TUN device (uplinks only)
//
// NETNS is a name under /run/netns (as `ip netns add` makes) or an absolute
// path to a namespace file (e.g. /proc/PID/ns/net).
type Spec struct {
	Kind   string
	IfName string // tap, netdev, tun
	Netns  string // tap, netdev, tun; "" is roamd's own namespace
	Path   string // stream
}

// String returns the spec in the form ParseSpec reads.
func (s Spec) String() string {
	if s.Kind == KindStream {
		return s.Kind + ":" + s.Path
	}
	if s.Netns != "" {
		return s.Kind + ":" + s.IfName + "@" + s.Netns
	}
	return s.Kind + ":" + s.IfName
}

// ParseSpec parses a port spec. Errors wrap ErrBadSpec and name the spec.
func ParseSpec(spec string) (Spec, error) {
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return Spec{}, fmt.Errorf("port spec %q: %w: want KIND:ARG with KIND one of tap, netdev, stream, tun", spec, ErrBadSpec)
	}
	s := Spec{Kind: kind}
	switch kind {
	case KindStream:
		if rest == "" {
			return Spec{}, fmt.Errorf("port spec %q: %w: empty socket path", spec, ErrBadSpec)
		}
		if len(rest) > 107 {
			return Spec{}, fmt.Errorf("port spec %q: %w: socket path is %d bytes, the limit is 107", spec, ErrBadSpec, len(rest))
		}
		s.Path = rest
		return s, nil
	case KindTAP, KindNetdev, KindTUN:
		name, ns, hasNS := strings.Cut(rest, "@")
		if err := checkIfName(name); err != nil {
			return Spec{}, fmt.Errorf("port spec %q: %w: %v", spec, ErrBadSpec, err)
		}
		if hasNS {
			if ns == "" || (!strings.HasPrefix(ns, "/") && strings.ContainsAny(ns, "/ \t\n")) {
				return Spec{}, fmt.Errorf("port spec %q: %w: bad namespace %q", spec, ErrBadSpec, ns)
			}
		}
		s.IfName, s.Netns = name, ns
		return s, nil
	}
	return Spec{}, fmt.Errorf("port spec %q: %w: unknown kind %q, want tap, netdev, stream or tun", spec, ErrBadSpec, kind)
}

// checkIfName applies the kernel's rules for interface names (dev_valid_name).
func checkIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is %d bytes, the limit is 15", name, len(name))
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is reserved", name)
	case strings.ContainsAny(name, "/: \t\n\x00"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}

// Options tune Open. The zero value is a good default.
type Options struct {
	// Queues is the number of TAP queues; more than 1 opens the device with
	// IFF_MULTI_QUEUE, one file descriptor per queue (see Device.Queues).
	Queues int
	// MTU, when not zero, is set on a tap or tun device (the guest side).
	MTU int
	// MAC, when set, is given to a tap device (the guest side).
	MAC net.HardwareAddr
	// Up brings a tap or tun device up once it is created.
	Up bool
	// NoOffload opens tap and netdev ports without a virtio-net header:
	// nothing arrives as a super-frame, and super-frames or partial
	// checksums written to the port are resolved in software.
	NoOffload bool
	// NoUSO keeps UDP segmentation offload (GSOUDPL4) off on a tap device
	// even when the kernel has it.
	NoUSO bool
	// Batch caps the frames one recvmmsg/sendmmsg moves on a netdev port
	// (default 64).
	Batch int
}

// Open opens the port that spec names. The returned port implements Stater
// and Operationaler; a tap port with Options.Queues > 1 also implements
// Multiqueue. Errors name the spec.
func Open(spec string, opts Options) (Port, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	var p Port
	switch s.Kind {
	case KindStream:
		p, err = OpenStream(s.Path)
	case KindTAP:
		p, err = openTAP(s, opts)
	case KindNetdev:
		p, err = openNetdev(s, opts)
	case KindTUN:
		p, err = openTUN(s, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", spec, err)
	}
	return p, nil
}

// Multiqueue is implemented by ports backed by several kernel queues (a TAP
// opened with Options.Queues > 1). Each queue is a Port of its own: run one
// reader per queue; a frame may be written to any queue.
type Multiqueue interface {
	Queues() []Port
}
