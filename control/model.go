package control

import (
	"maps"

	"roam/api"
)

// The model is the wire model: control stores and serves the types of
// package api. The names below keep control's code and tests reading as
// before; api is where the types, their JSON shape and their Clone methods
// are defined.
type (
	Subnet      = api.Subnet
	Group       = api.Group
	Rule        = api.Rule
	Instance    = api.Instance
	Port        = api.Port
	ENI         = api.ENI
	Attachment  = api.Attachment
	Association = api.Association
	Permissions = api.Permissions
	Address     = api.Address
	Event       = api.Event
	Flow        = api.Flow
	Stats       = api.Stats
	FlushResult = api.FlushResult
	Dump        = api.Dump

	CreateSubnetInput   = api.CreateSubnetInput
	CreateGroupInput    = api.CreateGroupInput
	RuleInput           = api.RuleInput
	CreateInstanceInput = api.CreateInstanceInput
	CreateENIInput      = api.CreateENIInput
	AttachInput         = api.AttachInput
	DetachInput         = api.DetachInput
	ReassignInput       = api.ReassignInput
	ReassignIPInput     = api.ReassignIPInput
	AssignIPsInput      = api.AssignIPsInput
	UnassignIPsInput    = api.UnassignIPsInput
	ModifyENIInput      = api.ModifyENIInput
	ModifyAttachment    = api.ModifyAttachment
	PermissionInput     = api.PermissionInput
	AllocateInput       = api.AllocateInput
	AssociateInput      = api.AssociateInput
)

// ID prefixes, statuses and permission names (see package api).
const (
	PrefixENI        = api.PrefixENI
	PrefixAttachment = api.PrefixAttachment
	PrefixEIP        = api.PrefixEIP
	PrefixGroup      = api.PrefixGroup
	PrefixRule       = api.PrefixRule
	PrefixSubnet     = api.PrefixSubnet

	StatusAvailable = api.StatusAvailable
	StatusInUse     = api.StatusInUse
	StatusAttaching = api.StatusAttaching
	StatusDetaching = api.StatusDetaching

	AttachmentAttached  = api.AttachmentAttached
	AttachmentAttaching = api.AttachmentAttaching
	AttachmentFailed    = api.AttachmentFailed
	PortUp              = api.PortUp
	PortDown            = api.PortDown
	PortUnplugged       = api.PortUnplugged

	PermOwner  = api.PermOwner
	PermAttach = api.PermAttach
	PermDetach = api.PermDetach
	PermSetIP  = api.PermSetIP
)

func cloneMap(m map[string]string) map[string]string { return maps.Clone(m) }
