package api

// CreateSubnetInput creates a subnet.
type CreateSubnetInput struct {
	CIDR        string            `json:"cidr"`
	MTU         int               `json:"mtu,omitempty"`
	DNS         []string          `json:"dns,omitempty"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// CreateGroupInput creates a security group.
type CreateGroupInput struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// RuleInput adds a rule to a group.
type RuleInput struct {
	Direction string `json:"direction"` // ingress or egress
	Protocol  string `json:"protocol"`  // all, tcp, udp, icmp or a number
	FromPort  *int   `json:"from_port,omitempty"`
	ToPort    *int   `json:"to_port,omitempty"`
	CIDR      string `json:"cidr,omitempty"`
	GroupID   string `json:"group_id,omitempty"`
}

// CreateInstanceInput creates an instance with ports by device index.
type CreateInstanceInput struct {
	Name  string   `json:"name"`
	Ports []string `json:"ports"`
	// QMP is the unix socket of the VM's QEMU monitor: attaching a record
	// then hot-plugs a NIC (see control/hotplug.go). An instance with a monitor may
	// have no port.
	QMP string `json:"qmp,omitempty"`
}

// CreateENIInput creates an interface record.
type CreateENIInput struct {
	SubnetID            string            `json:"subnet_id"`
	PrivateIP           string            `json:"private_ip,omitempty"`
	SecondaryPrivateIPs []string          `json:"secondary_private_ips,omitempty"`
	SecondaryCount      int               `json:"secondary_count,omitempty"`
	SecurityGroups      []string          `json:"security_groups,omitempty"`
	Description         string            `json:"description,omitempty"`
	Tags                map[string]string `json:"tags,omitempty"`
	SourceDestCheck     *bool             `json:"source_dest_check,omitempty"`
	Owner               *uint32           `json:"owner,omitempty"` // root only; default the caller
	FlowBudget          int               `json:"flow_budget,omitempty"`
}

// AttachInput attaches a record to an instance's port.
type AttachInput struct {
	InstanceID          string `json:"instance_id"`
	DeviceIndex         *int   `json:"device_index,omitempty"` // default: lowest free operational
	DeleteOnTermination bool   `json:"delete_on_termination,omitempty"`
}

// DetachInput detaches a record.
type DetachInput struct {
	AttachmentID string `json:"attachment_id,omitempty"` // needed when the record has several
	Force        bool   `json:"force,omitempty"`         // detach even when the port is not operational
}

// ReassignInput moves a record to another instance.
type ReassignInput struct {
	InstanceID   string `json:"instance_id"`
	DeviceIndex  *int   `json:"device_index,omitempty"`
	AttachmentID string `json:"attachment_id,omitempty"` // which attachment moves, needed when the record has several
}

// ReassignIPInput moves a private IP to an instance.
type ReassignIPInput struct {
	InstanceID     string   `json:"instance_id"`
	DeviceIndex    *int     `json:"device_index,omitempty"`
	AttachmentID   string   `json:"attachment_id,omitempty"`   // which attachment moves, needed when the record has several
	SecurityGroups []string `json:"security_groups,omitempty"` // for a record created on the way
	Description    string   `json:"description,omitempty"`
}

// AssignIPsInput adds secondary private IPs to a record.
type AssignIPsInput struct {
	PrivateIPs        []string `json:"private_ips,omitempty"`
	Count             int      `json:"count,omitempty"`
	AllowReassignment bool     `json:"allow_reassignment,omitempty"`
}

// UnassignIPsInput removes secondary private IPs from a record.
type UnassignIPsInput struct {
	PrivateIPs []string `json:"private_ips"`
}

// ModifyENIInput changes a record's settings; nil fields are left alone.
type ModifyENIInput struct {
	SourceDestCheck *bool              `json:"source_dest_check,omitempty"`
	SecurityGroups  *[]string          `json:"security_groups,omitempty"`
	Description     *string            `json:"description,omitempty"`
	Tags            *map[string]string `json:"tags,omitempty"`
	FlowBudget      *int               `json:"flow_budget,omitempty"`
	// FlowPolicy is "keep", "reevaluate" or "reset".
	FlowPolicy *string `json:"flow_policy,omitempty"`
	// Attachment changes DeleteOnTermination of one attachment.
	Attachment *ModifyAttachment `json:"attachment,omitempty"`
}

// ModifyAttachment changes one attachment.
type ModifyAttachment struct {
	AttachmentID        string `json:"attachment_id"`
	DeleteOnTermination bool   `json:"delete_on_termination"`
}

// PermissionInput grants or revokes one permission to one uid.
type PermissionInput struct {
	Permission string `json:"permission"` // owner, attach, detach or set-ip
	UID        uint32 `json:"uid"`
}

// AllocateInput allocates a public IP.
type AllocateInput struct {
	Address string `json:"address,omitempty"` // a given address of the pool; default the lowest free one
}

// AssociateInput associates a public IP with a record's private IP.
type AssociateInput struct {
	ENIID              string `json:"eni_id"`
	PrivateIP          string `json:"private_ip,omitempty"` // default the record's primary
	AllowReassociation bool   `json:"allow_reassociation,omitempty"`
}
