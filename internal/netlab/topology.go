package netlab

import (
	"fmt"
	"net/netip"
	"strings"

	vswitch "roam/switch"
)

// Addresses of the standard world. The outside is 203.0.113.0/24
// (TEST-NET-3): the pub namespace is the client and roam's next hop; roam
// is .1 (PAT); public IPs are allocated from .10 up. The inside is
// 10.0.0.0/24 and, for a second subnet, 10.1.0.0/24.
const (
	PublicCIDR = "203.0.113.0/24"
	PublicGW   = "203.0.113.1" // roam's own public address
	PubIP      = "203.0.113.2" // the outside client
	EIP        = "203.0.113.10"
	SubnetA    = "10.0.0.0/24"
	GatewayA   = "10.0.0.1"
	SubnetB    = "10.1.0.0/24"
	GatewayB   = "10.1.0.1"
	Dev        = "eth0" // every namespace's interface: roam's TAP
)

// GatewayMAC is the MAC roam answers with for gateways and public IPs.
var GatewayMAC = vswitch.DefaultGatewayMAC.String()

// StartPublic creates the pub namespace, starts roamd with its uplink TAP
// in it (pub is also the upstream next hop), gives pub its address and
// waits until pub reaches roam's public address (roam has then learned
// pub's MAC, so no first packet waits on ARP).
func (w *Lab) StartPublic(extra ...string) error {
	if err := w.AddNS("pub"); err != nil {
		return err
	}
	flags := append([]string{"--uplink", "tap:" + Dev + "@" + w.NS("pub"), "--public-cidr", PublicCIDR,
		"--public-ip", PublicGW, "--upstream", PubIP, "--log-level", "info"}, extra...)
	if err := w.StartRoamd(flags...); err != nil {
		return err
	}
	if err := w.WaitLink("pub", Dev); err != nil {
		return err
	}
	if err := w.Sh("pub", fmt.Sprintf("ip addr add %s/24 dev %s && ip link set %s up", PubIP, Dev, Dev)); err != nil {
		return err
	}
	return w.Ping("pub", PublicGW)
}

// Ping sends pings from namespace short to dst until one is answered
// (at most 20 tries, 5 s).
func (w *Lab) Ping(short, dst string) error {
	_, err := w.Run(short, "ping", "-c", "1", "-w", "5", "-i", "0.2", "-n", "-q", dst)
	return err
}

// PingOnce sends one ping and waits at most 1 s for the answer.
func (w *Lab) PingOnce(short, dst string) error {
	_, err := w.Run(short, "ping", "-c", "1", "-W", "1", "-n", "-q", dst)
	return err
}

// AddVM creates namespace short and a roam instance of the same name whose
// port 0 is a TAP device eth0 that roam creates in that namespace.
func (w *Lab) AddVM(short string) error {
	if err := w.AddNS(short); err != nil {
		return err
	}
	if _, err := w.Ctl("instance", "create", short, "--port", "tap:"+Dev+"@"+w.NS(short)); err != nil {
		return err
	}
	return w.WaitLink(short, Dev)
}

// ConfigureGuest gives namespace short's eth0 the address ip/bits (as a
// guest configured by hand), brings it up and routes everything through
// gw, whose MAC (roam's) it pins so that no packet waits on ARP.
func (w *Lab) ConfigureGuest(short, cidrAddr, gw string) error {
	return w.Sh(short, fmt.Sprintf(`
ip addr add %[1]s dev %[2]s
ip link set %[2]s up
ip route add default via %[3]s
ip neigh replace %[3]s lladdr %[4]s dev %[2]s nud permanent
`, cidrAddr, Dev, gw, GatewayMAC))
}

// ENI is the part of roamctl's record object the worlds use.
type ENI struct {
	ID          string   `json:"id"`
	PrivateIP   string   `json:"private_ip"`
	PrivateIPs  []string `json:"private_ips"`
	MAC         string   `json:"mac"`
	Status      string   `json:"status"`
	Attachments []struct {
		ID         string `json:"id"`
		InstanceID string `json:"instance_id"`
	} `json:"attachments"`
	Associations []struct {
		PublicIP string `json:"public_ip"`
	} `json:"associations"`
}

// Flow is roamctl's conntrack entry.
type Flow struct {
	Proto    string `json:"proto"`
	OrigSrc  string `json:"orig_src"`
	OrigDst  string `json:"orig_dst"`
	ReplySrc string `json:"reply_src"`
	ReplyDst string `json:"reply_dst"`
	State    string `json:"state"`
	ENIID    string `json:"eni_id"`
}

// Stats is roamctl's counters object.
type Stats struct {
	ID         string            `json:"id"`
	PacketsIn  uint64            `json:"packets_in"`
	PacketsOut uint64            `json:"packets_out"`
	Flows      int               `json:"flows"`
	Drops      map[string]uint64 `json:"drops"`
}

// Flows returns `roamctl conntrack list [--eni ENI]`.
func (w *Lab) Flows(eni string) ([]Flow, error) {
	args := []string{"conntrack", "list"}
	if eni != "" {
		args = append(args, "--eni", eni)
	}
	var fs []Flow
	err := w.CtlInto(&fs, args...)
	return fs, err
}

// Stats returns `roamctl stats [--eni ENI]`.
func (w *Lab) Stats(eni string) (Stats, error) {
	args := []string{"stats"}
	if eni != "" {
		args = append(args, "--eni", eni)
	}
	var s Stats
	err := w.CtlInto(&s, args...)
	return s, err
}

// Pair is the world of the reassign: pub outside, vmA holding a record
// with a public IP, vmB holding the same IP as a standby.
type Pair struct {
	W        *Lab
	Subnet   string // subnet id
	SG       string // security group id
	ENI      ENI    // the record, as created
	EIPAlloc string // its public IP's allocation id
	IP       string // the record's private IP (vmA's, and vmB's standby)
}

// PairOptions shape a Pair.
type PairOptions struct {
	// Ingress are the security group's ingress rules, each the flags of
	// `roamctl sg rule add` after the group id (default: tcp, udp and
	// icmp from anywhere).
	Ingress [][]string
}

// SetupPair builds the pair world through roamctl: the uplink in pub, a
// subnet, a security group, instances vma and vmb, a record attached to
// vma with a public IP (EIP), and both guests configured with the
// record's IP (vmB as a standby that receives nothing until the record
// moves to it).
func (w *Lab) SetupPair(o PairOptions) (*Pair, error) {
	p := &Pair{W: w}
	if err := w.StartPublic(); err != nil {
		return nil, err
	}
	var err error
	if p.Subnet, err = w.CtlID("subnet", "create", SubnetA); err != nil {
		return nil, err
	}
	if p.SG, err = w.CtlID("sg", "create", "--name", "web"); err != nil {
		return nil, err
	}
	if o.Ingress == nil {
		o.Ingress = [][]string{{"--protocol", "tcp"}, {"--protocol", "udp"}, {"--protocol", "icmp"}}
	}
	for _, r := range o.Ingress {
		args := append([]string{"sg", "rule", "add", p.SG, "--direction", "ingress"}, r...)
		if _, err := w.Ctl(args...); err != nil {
			return nil, err
		}
	}
	for _, vm := range []string{"vma", "vmb"} {
		if err := w.AddVM(vm); err != nil {
			return nil, err
		}
	}
	if err := w.CtlInto(&p.ENI, "eni", "create", "--subnet", p.Subnet, "--sg", p.SG, "--description", "the record that moves"); err != nil {
		return nil, err
	}
	p.IP = p.ENI.PrivateIP
	if _, err := w.Ctl("eni", "attach", p.ENI.ID, "--instance", "vma"); err != nil {
		return nil, err
	}
	if p.EIPAlloc, err = w.CtlID("eip", "allocate", "--address", EIP); err != nil {
		return nil, err
	}
	if _, err := w.Ctl("eip", "associate", p.EIPAlloc, "--eni", p.ENI.ID); err != nil {
		return nil, err
	}
	for _, vm := range []string{"vma", "vmb"} {
		if err := w.ConfigureGuest(vm, p.IP+"/24", GatewayA); err != nil {
			return nil, err
		}
	}
	if err := w.Ping("vma", GatewayA); err != nil {
		return nil, err
	}
	return p, nil
}

// Reassign moves the record to instance vm with `roamctl eni reassign`.
func (p *Pair) Reassign(vm string) error {
	_, err := p.W.Ctl("eni", "reassign", p.ENI.ID, "--instance", vm)
	return err
}

// EIPAddr returns the public IP with port.
func EIPAddr(port int) string {
	return netip.AddrPortFrom(netip.MustParseAddr(EIP), uint16(port)).String()
}

// KernelDrops returns the counters by which the kernel of namespace short
// says it dropped packets: UDP datagrams refused for a full socket buffer
// (udp_InErrors counts them with other input errors) and frames dropped by
// eth0 either way. Under CPU starvation these are the losses that are no
// switch's doing.
func (w *Lab) KernelDrops(short string) (map[string]uint64, error) {
	snmp, err := w.Run(short, "cat", "/proc/net/snmp")
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	lines := strings.Split(snmp, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "Udp: ") || !strings.HasPrefix(lines[i+1], "Udp: ") {
			continue
		}
		keys, vals := strings.Fields(lines[i])[1:], strings.Fields(lines[i+1])[1:]
		for j := range min(len(keys), len(vals)) {
			if keys[j] == "InErrors" || keys[j] == "RcvbufErrors" {
				var v uint64
				fmt.Sscan(vals[j], &v)
				m["udp_"+keys[j]] = v
			}
		}
		break
	}
	for _, dir := range []string{"rx", "tx"} {
		out, err := w.Run(short, "cat", "/sys/class/net/"+Dev+"/statistics/"+dir+"_dropped")
		if err != nil {
			return nil, err
		}
		var v uint64
		fmt.Sscan(out, &v)
		m[Dev+"_"+dir+"_dropped"] = v
	}
	return m, nil
}
