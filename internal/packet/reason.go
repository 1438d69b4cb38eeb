package packet

// Reason is why the data path dropped a frame or what it did with it. The
// data path keeps counters as arrays indexed by Reason, so counting costs no
// allocation and no map.
//
// Each package that drops owns its reasons, in a range of its own:
//
//	0 .. 15    packet   parse failures (below)
//	16 .. 31   nat      conntrack and NAT refusals (nat/reason.go)
//	32 .. 63   vswitch  the switch's decisions (switch/reason.go)
//
// A package declares its constants from the first value of its range and
// registers their names with RegisterReasons when it is initialised; String
// then names every reason, whichever package declared it. Adding a reason is
// one constant and one name in the package that drops for it.
type Reason uint8

// NumReasons is the size of every counter array indexed by Reason.
const NumReasons = 64

// First values of the ranges of package nat and package vswitch.
const (
	FirstNATReason    Reason = 16
	FirstSwitchReason Reason = 32
)

// Parse failures. ReasonNone means "not dropped".
const (
	ReasonNone          Reason = iota
	ReasonRunt                 // shorter than its headers say
	ReasonBadEtherType         // not IPv4, ARP or 802.1Q
	ReasonIPv6                 // IPv6 is recognised and dropped for now
	ReasonVLAN                 // 802.1Q or QinQ tagged: roam's ports are untagged
	ReasonBadIPHeader          // version, IHL or total length wrong
	ReasonBadIPChecksum        // IPv4 header checksum does not verify
	ReasonBadL4Header          // TCP data offset, UDP length, ICMP length wrong
	ReasonBadARP               // not Ethernet/IPv4 ARP
	numParseReasons
)

var reasonNames = [NumReasons]string{
	ReasonNone:          "none",
	ReasonRunt:          "runt",
	ReasonBadEtherType:  "bad_ethertype",
	ReasonIPv6:          "ipv6",
	ReasonVLAN:          "vlan_tagged",
	ReasonBadIPHeader:   "bad_ip_header",
	ReasonBadIPChecksum: "bad_ip_checksum",
	ReasonBadL4Header:   "bad_l4_header",
	ReasonBadARP:        "bad_arp",
}

// ranges are the [first, end) ranges RegisterReasons accepts, by owner.
var ranges = [][2]Reason{{FirstNATReason, FirstSwitchReason}, {FirstSwitchReason, NumReasons}}

// RegisterReasons names the n reasons from first on, the range of the
// calling package; names are snake_case and stable (counters, metrics and
// roamctl stats print them). It is called from a package's init and panics
// on a name already taken, a range overrun or a count that disagrees with
// names: mistakes a test run shows at once.
func RegisterReasons(first Reason, n int, names ...string) {
	if n != len(names) {
		panic("packet: RegisterReasons: count and names disagree")
	}
	end := Reason(0)
	for _, r := range ranges {
		if r[0] == first {
			end = r[1]
		}
	}
	if end == 0 || int(first)+n > int(end) {
		panic("packet: RegisterReasons: reasons outside their package's range")
	}
	for i, name := range names {
		r := first + Reason(i)
		if reasonNames[r] != "" || name == "" {
			panic("packet: RegisterReasons: reason " + name + " registered twice or unnamed")
		}
		for _, other := range reasonNames {
			if other == name {
				panic("packet: RegisterReasons: name " + name + " taken")
			}
		}
		reasonNames[r] = name
	}
}

// String returns the reason's snake_case name, as counters and metrics show
// it, "unknown" for a value no package declared.
func (r Reason) String() string {
	if r < NumReasons && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return "unknown"
}
