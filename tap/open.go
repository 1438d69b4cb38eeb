package tap

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Kinds of port spec, the part before the colon.
const (
	KindTAP    = "tap"
	KindNetdev = "netdev"
	KindStream = "stream"
	KindTUN    = "tun"
)

// Spec is a parsed port spec, the one syntax roamd, roamctl and the API
// share:
//
//	tap:IFNAME[@NETNS]     a TAP device roam creates (in NETNS when given)
//	netdev:IFNAME[@NETNS]  an existing link, attached by AF_PACKET
//	stream:PATH            a unix stream socket for QEMU -netdev stream
//	tun:IFNAME[@NETNS]     a routed TUN device (uplinks only)
//
// IFNAME is 1-15 bytes (IFNAMSIZ less the NUL) of A-Z a-z 0-9 _ . + -, not
// "." or "..". NETNS is a namespace name under /run/netns, as `ip netns add`
// makes: 1-64 bytes of A-Z a-z 0-9 _ . -, starting with a letter or digit.
// PATH is absolute, clean (filepath.Clean leaves it as it is) and at most
// 107 bytes (sun_path less the NUL).
type Spec struct {
	Kind  string
	Name  string // interface name: tap, netdev, tun
	Netns string // tap, netdev, tun; "" is roamd's own namespace
	Path  string // socket path: stream
}

// String returns the spec in the form ParseSpec reads.
func (s Spec) String() string {
	switch {
	case s.Kind == KindStream:
		return s.Kind + ":" + s.Path
	case s.Netns != "":
		return s.Kind + ":" + s.Name + "@" + s.Netns
	}
	return s.Kind + ":" + s.Name
}

// IsStream reports whether the spec names a unix stream socket (no kernel
// device: nothing to configure, hot-plugged into QEMU by its path).
func (s Spec) IsStream() bool { return s.Kind == KindStream }

// IsTAP reports whether the spec names a TAP device roam creates (whose
// guest side takes the record's MAC and MTU).
func (s Spec) IsTAP() bool { return s.Kind == KindTAP }

// SpecError is the error of ParseSpec and of Open for a spec that breaks the
// rules on Spec. It wraps ErrBadSpec.
type SpecError struct {
	Spec   string // the whole spec
	Field  string // "kind", "interface name", "namespace" or "socket path"
	Value  string // the field's value
	Reason string
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("port spec %q: %v: %s %q: %s", e.Spec, ErrBadSpec, e.Field, e.Value, e.Reason)
}

func (e *SpecError) Unwrap() error { return ErrBadSpec }

// Limits of the fields of a spec.
const (
	maxIfName = 15  // IFNAMSIZ less the NUL
	maxNetns  = 64  // roam's limit for a namespace name
	maxPath   = 107 // sizeof(sun_path) less the NUL
)

// ParseSpec parses a port spec. Errors are *SpecError (wrapping ErrBadSpec)
// naming the spec, the field and its value.
func ParseSpec(spec string) (Spec, error) {
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return Spec{}, &SpecError{spec, "kind", spec, "want KIND:ARG with KIND one of tap, netdev, stream, tun"}
	}
	s := Spec{Kind: kind}
	switch kind {
	case KindStream:
		s.Path = rest
	case KindTAP, KindNetdev, KindTUN:
		var hasNS bool
		s.Name, s.Netns, hasNS = strings.Cut(rest, "@")
		if hasNS && s.Netns == "" {
			return Spec{}, &SpecError{spec, "namespace", "", "bad namespace: empty"}
		}
	}
	if f, v, why := s.check(); f != "" {
		return Spec{}, &SpecError{spec, f, v, why}
	}
	return s, nil
}

// Check applies ParseSpec's rules to a Spec built in code.
func (s Spec) Check() error {
	if f, v, why := s.check(); f != "" {
		return &SpecError{s.String(), f, v, why}
	}
	return nil
}

// check returns the field that breaks the rules, its value and why, or "".
func (s Spec) check() (field, value, why string) {
	switch s.Kind {
	case KindStream:
		switch p := s.Path; {
		case p == "":
			return "socket path", p, "empty socket path"
		case len(p) > maxPath:
			return "socket path", p, fmt.Sprintf("socket path is %d bytes, the limit is %d", len(p), maxPath)
		case !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.IndexByte(p, 0) >= 0:
			return "socket path", p, "must be absolute and clean"
		}
		return "", "", ""
	case KindTAP, KindNetdev, KindTUN:
		if why := ifNameRule(s.Name); why != "" {
			return "interface name", s.Name, why
		}
		if s.Netns != "" {
			if why := netnsRule(s.Netns); why != "" {
				return "namespace", s.Netns, why
			}
		}
		return "", "", ""
	}
	return "kind", s.Kind, "unknown kind " + strconv.Quote(s.Kind) + ", want tap, netdev, stream or tun"
}

// ifNameRule applies the kernel's rules for interface names (dev_valid_name)
// and roam's character set; it returns why name breaks them, or "".
func ifNameRule(name string) string {
	switch {
	case name == "":
		return "empty interface name"
	case len(name) > maxIfName:
		return fmt.Sprintf("interface name is %d bytes, the limit is %d", len(name), maxIfName)
	case name == "." || name == "..":
		return "interface name is reserved"
	case strings.IndexFunc(name, func(r rune) bool { return !ifNameChar(r) }) >= 0:
		return "interface name contains a character outside A-Z a-z 0-9 _ . + -"
	}
	return ""
}

// netnsRule returns why ns is not a namespace name, or "".
func netnsRule(ns string) string {
	switch {
	case len(ns) > maxNetns:
		return fmt.Sprintf("bad namespace: %d bytes, the limit is %d", len(ns), maxNetns)
	case !isAlnum(rune(ns[0])):
		return "bad namespace: must start with a letter or digit"
	case strings.IndexFunc(ns, func(r rune) bool { return !isAlnum(r) && r != '_' && r != '.' && r != '-' }) >= 0:
		return "bad namespace: must be a name of A-Z a-z 0-9 _ . - (as ip netns add makes)"
	}
	return ""
}

func isAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

func ifNameChar(r rune) bool { return isAlnum(r) || r == '_' || r == '.' || r == '+' || r == '-' }

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
