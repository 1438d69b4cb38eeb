package api

import (
	"maps"
	"net/netip"
	"slices"
	"time"
)

// ID prefixes of the objects control creates. An ID is the prefix and 8
// lowercase hex digits; instances are identified by their name instead.
const (
	PrefixENI        = "eni-"
	PrefixAttachment = "attach-"
	PrefixEIP        = "eipalloc-"
	PrefixGroup      = "sg-"
	PrefixRule       = "sgr-"
	PrefixSubnet     = "subnet-"
)

// Record statuses (ENI.Status).
const (
	StatusAvailable = "available"
	StatusInUse     = "in-use"
	// StatusAttaching is a record whose new attachment waits for its host
	// effects (hot-plug, guest MAC; see control's effects.go): the data
	// path keeps its previous binding meanwhile. StatusDetaching is part of
	// the vocabulary of DESIGN.md; a detach takes effect in the data path
	// at its commit, so no reader observes it.
	StatusAttaching = "attaching"
	StatusDetaching = "detaching"
)

// Attachment and port statuses. An attachment is "attaching" while its
// host effects run and "failed" (with Attachment.StatusReason) while they
// are retried; both are runtime facts, never stored.
const (
	AttachmentAttached  = "attached"
	AttachmentAttaching = "attaching"
	AttachmentFailed    = "failed"
	PortUp              = "up"
	PortDown            = "down"
	// PortUnplugged is a free hot-plug slot: no NIC in the VM, no port open.
	PortUnplugged = "unplugged"
)

// Subnet is a private IPv4 CIDR whose first address is roam's gateway.
type Subnet struct {
	ID          string            `json:"id"`
	CIDR        netip.Prefix      `json:"cidr"`
	Gateway     netip.Addr        `json:"gateway"`
	MTU         int               `json:"mtu"`
	DNS         []netip.Addr      `json:"dns"`
	Description string            `json:"description"`
	Tags        map[string]string `json:"tags"`
	CreatedAt   time.Time         `json:"created_at"`
}

// Group is a security group.
type Group struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Ingress     []Rule    `json:"ingress"`
	Egress      []Rule    `json:"egress"`
	CreatedAt   time.Time `json:"created_at"`
}

// Rule allows traffic in one direction. Protocol is "all", "tcp", "udp",
// "icmp" or a protocol number. For tcp and udp FromPort..ToPort is the
// destination port range; for icmp FromPort is the type and ToPort the code,
// -1 meaning any. The peer is CIDR or, when GroupID is set, every address of
// every record in that group.
type Rule struct {
	ID        string       `json:"id"`
	Direction string       `json:"direction"`
	Protocol  string       `json:"protocol"`
	FromPort  int          `json:"from_port"`
	ToPort    int          `json:"to_port"`
	CIDR      netip.Prefix `json:"cidr,omitzero"`
	GroupID   string       `json:"group_id,omitempty"`
}

// Instance is a VM or namespace with ports numbered by device index.
type Instance struct {
	ID          string    `json:"id"` // the name
	Name        string    `json:"name"`
	Owner       uint32    `json:"owner"`
	Ports       []Port    `json:"ports"`
	Attachments []string  `json:"attachments"` // filled on read
	CreatedAt   time.Time `json:"created_at"`
	// QMP is the unix socket of the VM's QEMU monitor, "" for none. With
	// it, attaching a record hot-plugs a NIC carrying the record's MAC
	// (see control/hotplug.go).
	QMP string `json:"qmp,omitempty"`
}

// Port is one port of an instance. Status and Error are runtime facts,
// never stored: "up" when the port driver opened it, "down" otherwise.
type Port struct {
	DeviceIndex  int    `json:"device_index"`
	Spec         string `json:"spec"`
	Name         string `json:"name,omitempty"`
	Status       string `json:"status,omitempty"`
	Error        string `json:"error,omitempty"`
	AttachmentID string `json:"attachment_id,omitempty"`
	ENIID        string `json:"eni_id,omitempty"`
	// Hotplug marks a port roam created for a hot-plugged NIC: a stream
	// socket whose NIC is in the VM exactly while a record is attached.
	Hotplug bool `json:"hotplug,omitempty"`
}

// ENI is an interface record.
type ENI struct {
	ID              string            `json:"id"`
	SubnetID        string            `json:"subnet_id"`
	PrivateIP       netip.Addr        `json:"private_ip"`
	PrivateIPs      []netip.Addr      `json:"private_ips"` // primary first
	MAC             string            `json:"mac"`
	SecurityGroups  []string          `json:"security_groups"`
	SourceDestCheck bool              `json:"source_dest_check"`
	Description     string            `json:"description"`
	Tags            map[string]string `json:"tags"`
	Status          string            `json:"status"`
	Attachments     []Attachment      `json:"attachments"`
	Associations    []Association     `json:"associations"` // filled on read
	Permissions     Permissions       `json:"permissions"`
	FlowBudget      int               `json:"flow_budget"`
	// FlowPolicy is what a change of the record's security groups or
	// public IPs does to its existing flows: "keep" (the default; absent
	// means keep), "reevaluate" or "reset" (see vswitch.Record.FlowPolicy).
	FlowPolicy string    `json:"flow_policy,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// Attachment binds a record to a device index of an instance.
type Attachment struct {
	ID                  string    `json:"id"`
	InstanceID          string    `json:"instance_id"`
	DeviceIndex         int       `json:"device_index"`
	Port                string    `json:"port"` // the port spec, filled on read
	DeleteOnTermination bool      `json:"delete_on_termination"`
	Status              string    `json:"status"`
	StatusReason        string    `json:"status_reason,omitempty"` // why it is "failed"; filled on read
	AttachedAt          time.Time `json:"attached_at"`
}

// Association is a public IP bound to one private IP of a record.
type Association struct {
	AllocationID string     `json:"allocation_id"`
	PublicIP     netip.Addr `json:"public_ip"`
	PrivateIP    netip.Addr `json:"private_ip"`
}

// Permissions are the uids allowed to act on a record besides root. Owners
// may do everything; the other lists grant one kind of operation each.
type Permissions struct {
	Owners    []uint32 `json:"owners"`
	Attachers []uint32 `json:"attachers"`
	Detachers []uint32 `json:"detachers"`
	IPSetters []uint32 `json:"ip_setters"`
}

// Permission names accepted by grant and revoke.
const (
	PermOwner  = "owner"
	PermAttach = "attach"
	PermDetach = "detach"
	PermSetIP  = "set-ip"
)

// Address is a public IP allocation (EIP).
type Address struct {
	ID        string     `json:"id"`
	PublicIP  netip.Addr `json:"public_ip"`
	ENIID     string     `json:"eni_id,omitempty"`
	PrivateIP netip.Addr `json:"private_ip,omitzero"`
	CreatedAt time.Time  `json:"created_at"`
}

// Event is one entry of the audit log.
type Event struct {
	ID        uint64    `json:"id"`
	Time      time.Time `json:"time"`
	UID       uint32    `json:"uid"`
	Operation string    `json:"operation"`
	Target    string    `json:"target"`
	Result    string    `json:"result"` // "ok" or an error code
	Message   string    `json:"message,omitempty"`
}

// Clone returns a deep copy; a nil DNS or Tags becomes empty.
func (s *Subnet) Clone() *Subnet {
	c := *s
	c.DNS = slices.Clone(s.DNS)
	if c.DNS == nil {
		c.DNS = []netip.Addr{}
	}
	c.Tags = maps.Clone(s.Tags)
	if c.Tags == nil {
		c.Tags = map[string]string{}
	}
	return &c
}

// Clone returns a deep copy.
func (g *Group) Clone() *Group {
	c := *g
	c.Ingress = slices.Clone(g.Ingress)
	c.Egress = slices.Clone(g.Egress)
	return &c
}

// HasRule reports whether the group has a rule with this id.
func (g *Group) HasRule(id string) bool {
	f := func(r Rule) bool { return r.ID == id }
	return slices.ContainsFunc(g.Ingress, f) || slices.ContainsFunc(g.Egress, f)
}

// Clone returns a deep copy of the stored fields (Attachments, which are
// filled on read, are left out).
func (in *Instance) Clone() *Instance {
	c := *in
	c.Ports = slices.Clone(in.Ports)
	c.Attachments = nil
	return &c
}

// Clone returns a deep copy of the stored fields (Associations, which are
// filled on read, are left out).
func (e *ENI) Clone() *ENI {
	c := *e
	c.PrivateIPs = slices.Clone(e.PrivateIPs)
	c.SecurityGroups = slices.Clone(e.SecurityGroups)
	c.Tags = maps.Clone(e.Tags)
	c.Attachments = slices.Clone(e.Attachments)
	c.Associations = nil
	c.Permissions = Permissions{
		Owners:    slices.Clone(e.Permissions.Owners),
		Attachers: slices.Clone(e.Permissions.Attachers),
		Detachers: slices.Clone(e.Permissions.Detachers),
		IPSetters: slices.Clone(e.Permissions.IPSetters),
	}
	return &c
}

// Clone returns a copy.
func (a *Address) Clone() *Address { c := *a; return &c }

// HasIP reports whether ip is one of the record's private IPs.
func (e *ENI) HasIP(ip netip.Addr) bool { return slices.Contains(e.PrivateIPs, ip) }

// FindAttachment returns the index and the attachment with this id, or -1
// and nil.
func (e *ENI) FindAttachment(id string) (int, *Attachment) {
	for i := range e.Attachments {
		if e.Attachments[i].ID == id {
			return i, &e.Attachments[i]
		}
	}
	return -1, nil
}
