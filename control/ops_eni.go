package control

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	vswitch "roam/switch"
)

// MaxIPsPerENI is the most private IPs (primary included) a record holds.
const MaxIPsPerENI = 64

// CreateENI creates a record. Any uid may; the caller (or, for root, Owner)
// becomes its owner.
func (s *Service) CreateENI(p Principal, in CreateENIInput) (*ENI, error) {
	return update(s, p, "CreateNetworkInterface", func(tx *txn) (func() *ENI, error) {
		tx.target = in.SubnetID
		e, err := s.createENI(tx, in)
		if err != nil {
			return nil, err
		}
		return s.eniViewFn(e.ID), nil
	})
}

func (s *Service) eniViewFn(id string) func() *ENI {
	return func() *ENI { return s.eniView(s.st.view(), s.st.enis[id]) }
}

func (s *Service) createENI(tx *txn, in CreateENIInput) (*ENI, error) {
	sn := tx.subnet(in.SubnetID)
	if sn == nil {
		return nil, notFound("subnet", in.SubnetID)
	}
	owner := tx.p.UID
	if in.Owner != nil {
		if !tx.p.IsRoot() && *in.Owner != tx.p.UID {
			return nil, errorf(CodeUnauthorized, "uid %d may not create a record owned by uid %d", tx.p.UID, *in.Owner)
		}
		owner = *in.Owner
	}
	if err := validText("description", in.Description); err != nil {
		return nil, err
	}
	if err := validTags(in.Tags); err != nil {
		return nil, err
	}
	if in.FlowBudget < 0 {
		return nil, invalid("flow_budget", in.FlowBudget, "must be >= 0")
	}
	groups, err := s.checkGroups(tx, in.SecurityGroups)
	if err != nil {
		return nil, err
	}
	e := &ENI{
		SubnetID: sn.ID, SecurityGroups: groups, SourceDestCheck: true, Description: in.Description,
		Tags: cloneMap(in.Tags), Attachments: []Attachment{}, FlowBudget: in.FlowBudget, CreatedAt: s.now().UTC(),
		Permissions: Permissions{Owners: []uint32{owner}, Attachers: []uint32{}, Detachers: []uint32{}, IPSetters: []uint32{}},
	}
	if in.SourceDestCheck != nil {
		e.SourceDestCheck = *in.SourceDestCheck
	}
	want := []string{}
	if in.PrivateIP != "" {
		want = append(want, in.PrivateIP)
	}
	want = append(want, in.SecondaryPrivateIPs...)
	for i, raw := range want {
		field := "secondary_private_ips"
		if i == 0 && in.PrivateIP != "" {
			field = "private_ip"
		}
		ip, err := s.checkFreeIP(tx, sn, field, raw)
		if err != nil {
			return nil, err
		}
		if slices.Contains(e.PrivateIPs, ip) {
			return nil, invalid(field, raw, "listed twice")
		}
		e.PrivateIPs = append(e.PrivateIPs, ip)
	}
	n := in.SecondaryCount
	if in.PrivateIP == "" {
		n++
	}
	if n < 0 || len(e.PrivateIPs)+n > MaxIPsPerENI {
		return nil, invalid("secondary_count", in.SecondaryCount, fmt.Sprintf("a record holds 1 to %d private ips", MaxIPsPerENI))
	}
	free, err := s.freeIPs(tx, sn, n, e.PrivateIPs)
	if err != nil {
		return nil, err
	}
	if in.PrivateIP == "" {
		// The lowest free address is the primary, then the secondaries.
		e.PrivateIPs = append(free[:1:1], append(e.PrivateIPs, free[1:]...)...)
	} else {
		e.PrivateIPs = append(e.PrivateIPs, free...)
	}
	e.PrivateIP = e.PrivateIPs[0]
	e.ID = s.newID(PrefixENI, func(id string) bool { return tx.eni(id) != nil })
	e.MAC = s.newMAC(tx.macUsed)
	tx.target = e.ID
	tx.putENI(e)
	return e, nil
}

func (s *Service) checkGroups(tx *txn, ids []string) ([]string, error) {
	out := []string{}
	for _, id := range ids {
		g := tx.group(id)
		if g == nil {
			// Accept a group name too.
			each(tx.st.groups, tx.groups, func(o *Group) {
				if o.Name == id && o.Name != "" {
					g = o
				}
			})
		}
		if g == nil {
			return nil, notFound("security group", id)
		}
		if !slices.Contains(out, g.ID) {
			out = append(out, g.ID)
		}
	}
	if len(out) > 5 {
		return nil, invalid("security_groups", len(out), "a record has at most 5 groups")
	}
	return out, nil
}

// checkFreeIP parses raw and checks it is a usable, unowned address of sn.
func (s *Service) checkFreeIP(tx *txn, sn *Subnet, field, raw string) (netip.Addr, error) {
	ip, err := parseAddr(field, raw)
	if err != nil {
		return ip, err
	}
	if err := usable(sn, field, ip); err != nil {
		return ip, err
	}
	if o := tx.ipOwner(ip); o != "" {
		return ip, errorf(CodeAddressInUse, "%s %s is already assigned to %s", field, ip, o)
	}
	return ip, nil
}

func usable(sn *Subnet, field string, ip netip.Addr) error {
	if !sn.CIDR.Contains(ip) {
		return errorf(CodeInvalidSubnet, "%s %s is not in subnet %s (%s)", field, ip, sn.ID, sn.CIDR)
	}
	if what, ok := reserved(sn.CIDR, ip); ok {
		return invalid(field, ip, "reserved: "+what+" of "+sn.ID)
	}
	return nil
}

// freeIPs returns the n lowest free usable addresses of sn not in skip.
func (s *Service) freeIPs(tx *txn, sn *Subnet, n int, skip []netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	last := lastAddr(sn.CIDR)
	for ip := sn.Gateway.Next(); len(out) < n && ip.Less(last); ip = ip.Next() {
		if tx.ipOwner(ip) == "" && !slices.Contains(skip, ip) {
			out = append(out, ip)
		}
	}
	if len(out) < n {
		return nil, errorf(CodeAddressLimit, "subnet %s (%s) has no free address left (wanted %d)", sn.ID, sn.CIDR, n)
	}
	return out, nil
}

// authorize checks that the caller may act on e with perm.
func authorize(p Principal, e *ENI, perm string) error {
	if p.IsRoot() || slices.Contains(e.Permissions.Owners, p.UID) {
		return nil
	}
	var list []uint32
	switch perm {
	case PermAttach:
		list = e.Permissions.Attachers
	case PermDetach:
		list = e.Permissions.Detachers
	case PermSetIP:
		list = e.Permissions.IPSetters
	}
	if slices.Contains(list, p.UID) {
		return nil
	}
	if perm == PermOwner {
		return errorf(CodeUnauthorized, "uid %d may not change record %s: not one of its owners", p.UID, e.ID)
	}
	return errorf(CodeUnauthorized, "uid %d may not %s record %s: not an owner and not granted %q", p.UID, perm, e.ID, perm)
}

func (s *Service) eniFor(tx *txn, id string, perms ...string) (*ENI, error) {
	tx.target = id
	e := tx.eni(id)
	if e == nil {
		return nil, notFound("record", id)
	}
	for _, perm := range perms {
		if err := authorize(tx.p, e, perm); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// DeleteENI deletes a record that is not attached; its public IPs are
// disassociated.
func (s *Service) DeleteENI(p Principal, id string) (*ENI, error) {
	return update(s, p, "DeleteNetworkInterface", func(tx *txn) (func() *ENI, error) {
		e, err := s.eniFor(tx, id, PermOwner)
		if err != nil {
			return nil, err
		}
		if len(e.Attachments) > 0 {
			return nil, errorf(CodeIncorrectState, "record %s is attached to instance %s (%s); detach it first", id, e.Attachments[0].InstanceID, e.Attachments[0].ID)
		}
		view := s.eniView(tx, e)
		view.Status = "deleted"
		if err := s.deleteENI(tx, e); err != nil {
			return nil, err
		}
		return func() *ENI { return view }, nil
	})
}

// Attach attaches a record at a device index of an instance.
func (s *Service) Attach(p Principal, id string, in AttachInput) (*ENI, error) {
	return update(s, p, "AttachNetworkInterface", func(tx *txn) (func() *ENI, error) {
		e, err := s.eniFor(tx, id, PermAttach)
		if err != nil {
			return nil, err
		}
		e = e.Clone()
		if err := s.attach(tx, e, in); err != nil {
			return nil, err
		}
		tx.putENI(e)
		return s.eniViewFn(id), nil
	})
}

func (s *Service) attach(tx *txn, e *ENI, in AttachInput) error {
	inst := tx.instance(in.InstanceID)
	if inst == nil {
		return notFound("instance", in.InstanceID)
	}
	for _, a := range e.Attachments {
		if a.InstanceID == inst.ID {
			return errorf(CodeIncorrectState, "record %s is already attached to instance %s at device_index %d (%s)", e.ID, inst.ID, a.DeviceIndex, a.ID)
		}
	}
	if len(e.Attachments) >= MaxPorts {
		return errorf(CodeAddressLimit, "record %s already has %d attachments", e.ID, len(e.Attachments))
	}
	idx, err := s.pickOrPlug(tx, inst, in.DeviceIndex, e)
	if err != nil {
		return err
	}
	e.Attachments = append(e.Attachments, Attachment{
		ID: s.id(tx, PrefixAttachment), InstanceID: inst.ID, DeviceIndex: idx,
		DeleteOnTermination: in.DeleteOnTermination, Status: AttachmentAttached, AttachedAt: s.now().UTC(),
	})
	return nil
}

// pickAttachment returns the index of the attachment named by id, or of the
// only one when id is "".
func pickAttachment(e *ENI, id string) (int, error) {
	if id != "" {
		i, a := e.FindAttachment(id)
		if a == nil {
			return -1, errorf(CodeNotFound, "attachment_id %q is not an attachment of record %s", id, e.ID)
		}
		return i, nil
	}
	switch len(e.Attachments) {
	case 0:
		return -1, nil
	case 1:
		return 0, nil
	}
	ids := make([]string, len(e.Attachments))
	for i, a := range e.Attachments {
		ids[i] = a.ID
	}
	return -1, invalid("attachment_id", "", "record "+e.ID+" has several attachments ("+strings.Join(ids, ", ")+
		"); name the one that moves with attachment_id (roamctl: --attachment ATTACH-ID)")
}

// Detach removes an attachment; the record becomes available when it was
// the last.
func (s *Service) Detach(p Principal, id string, in DetachInput) (*ENI, error) {
	return update(s, p, "DetachNetworkInterface", func(tx *txn) (func() *ENI, error) {
		e, err := s.eniFor(tx, id, PermDetach)
		if err != nil {
			return nil, err
		}
		i, err := pickAttachment(e, in.AttachmentID)
		if err != nil {
			return nil, err
		}
		if i < 0 {
			return nil, errorf(CodeIncorrectState, "record %s is not attached", id)
		}
		a := e.Attachments[i]
		if inst := tx.instance(a.InstanceID); !in.Force && inst != nil && !s.operational(inst.Ports[a.DeviceIndex].Spec) {
			return nil, errorf(CodeIncorrectState, "attachment %s: port %s of instance %s is not operational; use force to detach anyway",
				a.ID, inst.Ports[a.DeviceIndex].Spec, inst.ID)
		}
		e = e.Clone()
		e.Attachments = slices.Delete(e.Attachments, i, i+1)
		tx.putENI(e)
		s.unplugFreed(tx, a.InstanceID, a.DeviceIndex)
		return s.eniViewFn(id), nil
	})
}

// Reassign moves the record's attachment to another instance in one
// transaction: the published config changes the record's port in one step,
// so its IPs are never without an owner, and the record keeps its IPs, MAC,
// public IPs, groups and tracked flows. The attachment keeps its id and its
// DeleteOnTermination. An unattached record is simply attached.
func (s *Service) Reassign(p Principal, id string, in ReassignInput) (*ENI, error) {
	return update(s, p, "ReassignNetworkInterface", func(tx *txn) (func() *ENI, error) {
		e, err := s.eniFor(tx, id, PermDetach, PermAttach)
		if err != nil {
			return nil, err
		}
		if err := s.reassign(tx, e, in); err != nil {
			return nil, err
		}
		return s.eniViewFn(id), nil
	})
}

func (s *Service) reassign(tx *txn, e *ENI, in ReassignInput) error {
	i, err := pickAttachment(e, in.AttachmentID)
	if err != nil {
		return err
	}
	inst := tx.instance(in.InstanceID)
	if inst == nil {
		return notFound("instance", in.InstanceID)
	}
	e = e.Clone()
	if i < 0 {
		if err := s.attach(tx, e, AttachInput{InstanceID: in.InstanceID, DeviceIndex: in.DeviceIndex}); err != nil {
			return err
		}
		tx.putENI(e)
		return nil
	}
	for j, a := range e.Attachments {
		if a.InstanceID == inst.ID {
			if j == i {
				return errorf(CodeIncorrectState, "record %s is already attached to instance %s (%s)", e.ID, inst.ID, a.ID)
			}
			return errorf(CodeIncorrectState, "record %s is already attached to instance %s by another attachment (%s)", e.ID, inst.ID, a.ID)
		}
	}
	idx, err := s.pickOrPlug(tx, inst, in.DeviceIndex, e)
	if err != nil {
		return err
	}
	a := &e.Attachments[i]
	from, fromIdx := a.InstanceID, a.DeviceIndex
	a.InstanceID, a.DeviceIndex, a.AttachedAt = inst.ID, idx, s.now().UTC()
	tx.putENI(e)
	s.unplugFreed(tx, from, fromIdx)
	return nil
}

// ReassignIP moves the record that holds ip to the instance; when no record
// holds it, a record is created with ip as its primary address in the
// subnet that contains it, and attached. Either way one transaction.
func (s *Service) ReassignIP(p Principal, ipStr string, in ReassignIPInput) (*ENI, error) {
	return update(s, p, "ReassignPrivateIp", func(tx *txn) (func() *ENI, error) {
		tx.target = ipStr
		ip, err := parseAddr("private_ip", ipStr)
		if err != nil {
			return nil, err
		}
		if tx.instance(in.InstanceID) == nil {
			return nil, notFound("instance", in.InstanceID)
		}
		if id := tx.ipOwner(ip); id != "" {
			e, err := s.eniFor(tx, id, PermDetach, PermAttach)
			if err != nil {
				return nil, err
			}
			if err := s.reassign(tx, e, ReassignInput{InstanceID: in.InstanceID, DeviceIndex: in.DeviceIndex, AttachmentID: in.AttachmentID}); err != nil {
				return nil, err
			}
			return s.eniViewFn(id), nil
		}
		if in.AttachmentID != "" {
			return nil, errorf(CodeNotFound, "attachment_id %q: no record holds private_ip %s", in.AttachmentID, ip)
		}
		var sn *Subnet
		each(tx.st.subnets, tx.subnets, func(o *Subnet) {
			if o.CIDR.Contains(ip) {
				sn = o
			}
		})
		if sn == nil {
			return nil, errorf(CodeInvalidSubnet, "private_ip %s is in no subnet", ip)
		}
		e, err := s.createENI(tx, CreateENIInput{SubnetID: sn.ID, PrivateIP: ip.String(),
			SecurityGroups: in.SecurityGroups, Description: in.Description})
		if err != nil {
			return nil, err
		}
		if err := s.attach(tx, e, AttachInput{InstanceID: in.InstanceID, DeviceIndex: in.DeviceIndex}); err != nil {
			return nil, err
		}
		return s.eniViewFn(e.ID), nil
	})
}

// AssignIPs adds secondary IPs. With AllowReassignment an IP held as a
// secondary by another record of the same subnet moves, with its public IP
// association; a primary IP never moves.
func (s *Service) AssignIPs(p Principal, id string, in AssignIPsInput) (*ENI, error) {
	return update(s, p, "AssignPrivateIpAddresses", func(tx *txn) (func() *ENI, error) {
		e, err := s.eniFor(tx, id, PermSetIP)
		if err != nil {
			return nil, err
		}
		if len(in.PrivateIPs) == 0 && in.Count <= 0 {
			return nil, invalid("private_ips", "", "give addresses or a count > 0")
		}
		if in.Count < 0 {
			return nil, invalid("count", in.Count, "must be >= 0")
		}
		sn := tx.subnet(e.SubnetID)
		e = e.Clone()
		for _, raw := range in.PrivateIPs {
			ip, err := parseAddr("private_ips", raw)
			if err != nil {
				return nil, err
			}
			if err := usable(sn, "private_ips", ip); err != nil {
				return nil, err
			}
			if e.HasIP(ip) {
				return nil, errorf(CodeAddressInUse, "private_ips %s is already assigned to %s", ip, id)
			}
			if o := tx.ipOwner(ip); o != "" {
				other := tx.eni(o)
				if !in.AllowReassignment {
					return nil, errorf(CodeAddressInUse, "private_ips %s is assigned to %s; use allow_reassignment to move it", ip, o)
				}
				if other.PrivateIP == ip {
					return nil, errorf(CodeAddressInUse, "private_ips %s is the primary ip of %s and cannot move", ip, o)
				}
				if err := authorize(p, other, PermSetIP); err != nil {
					return nil, err
				}
				other = other.Clone()
				other.PrivateIPs = slices.DeleteFunc(other.PrivateIPs, func(x netip.Addr) bool { return x == ip })
				tx.putENI(other)
				if aid := tx.eipByPrivate(ip); aid != "" {
					a := tx.eip(aid).Clone()
					a.ENIID = e.ID
					tx.putEIP(a)
				}
			}
			e.PrivateIPs = append(e.PrivateIPs, ip)
		}
		if len(e.PrivateIPs)+in.Count > MaxIPsPerENI {
			return nil, invalid("count", in.Count, fmt.Sprintf("record %s would hold more than %d private ips", id, MaxIPsPerENI))
		}
		free, err := s.freeIPs(tx, sn, in.Count, e.PrivateIPs)
		if err != nil {
			return nil, err
		}
		e.PrivateIPs = append(e.PrivateIPs, free...)
		tx.putENI(e)
		return s.eniViewFn(id), nil
	})
}

// UnassignIPs removes secondary IPs (never the primary); a public IP
// associated with one is disassociated.
func (s *Service) UnassignIPs(p Principal, id string, in UnassignIPsInput) (*ENI, error) {
	return update(s, p, "UnassignPrivateIpAddresses", func(tx *txn) (func() *ENI, error) {
		e, err := s.eniFor(tx, id, PermSetIP)
		if err != nil {
			return nil, err
		}
		if len(in.PrivateIPs) == 0 {
			return nil, invalid("private_ips", "", "give at least one address")
		}
		e = e.Clone()
		for _, raw := range in.PrivateIPs {
			ip, err := parseAddr("private_ips", raw)
			if err != nil {
				return nil, err
			}
			if ip == e.PrivateIP {
				return nil, invalid("private_ips", ip, "the primary ip of "+id+" cannot be unassigned")
			}
			if !e.HasIP(ip) {
				return nil, errorf(CodeNotFound, "private_ips %s is not assigned to %s", ip, id)
			}
			e.PrivateIPs = slices.DeleteFunc(e.PrivateIPs, func(x netip.Addr) bool { return x == ip })
			if aid := tx.eipByPrivate(ip); aid != "" {
				a := tx.eip(aid).Clone()
				a.ENIID, a.PrivateIP = "", netip.Addr{}
				tx.putEIP(a)
			}
		}
		tx.putENI(e)
		return s.eniViewFn(id), nil
	})
}

// ModifyENI changes a record's settings. A change of groups applies to new
// flows; tracked flows keep their verdict.
func (s *Service) ModifyENI(p Principal, id string, in ModifyENIInput) (*ENI, error) {
	return update(s, p, "ModifyNetworkInterfaceAttribute", func(tx *txn) (func() *ENI, error) {
		e, err := s.eniFor(tx, id, PermOwner)
		if err != nil {
			return nil, err
		}
		e = e.Clone()
		changed := false
		if in.SourceDestCheck != nil {
			e.SourceDestCheck, changed = *in.SourceDestCheck, true
		}
		if in.SecurityGroups != nil {
			g, err := s.checkGroups(tx, *in.SecurityGroups)
			if err != nil {
				return nil, err
			}
			e.SecurityGroups, changed = g, true
		}
		if in.Description != nil {
			if err := validText("description", *in.Description); err != nil {
				return nil, err
			}
			e.Description, changed = *in.Description, true
		}
		if in.Tags != nil {
			if err := validTags(*in.Tags); err != nil {
				return nil, err
			}
			e.Tags, changed = cloneMap(*in.Tags), true
		}
		if in.FlowBudget != nil {
			if *in.FlowBudget < 0 {
				return nil, invalid("flow_budget", *in.FlowBudget, "must be >= 0")
			}
			e.FlowBudget, changed = *in.FlowBudget, true
		}
		if in.FlowPolicy != nil {
			switch *in.FlowPolicy {
			case vswitch.FlowKeep, vswitch.FlowReevaluate, vswitch.FlowReset:
			default:
				return nil, invalid("flow_policy", *in.FlowPolicy, "want keep, reevaluate or reset")
			}
			e.FlowPolicy, changed = *in.FlowPolicy, true
		}
		if in.Attachment != nil {
			_, a := e.FindAttachment(in.Attachment.AttachmentID)
			if a == nil {
				return nil, errorf(CodeNotFound, "attachment_id %q is not an attachment of record %s", in.Attachment.AttachmentID, id)
			}
			a.DeleteOnTermination, changed = in.Attachment.DeleteOnTermination, true
		}
		if !changed {
			return nil, invalid("modify", "", "nothing to change: give at least one attribute")
		}
		tx.putENI(e)
		return s.eniViewFn(id), nil
	})
}

// Grant adds a uid to one of a record's permission lists. Only owners (and
// root) may.
func (s *Service) Grant(p Principal, id string, in PermissionInput) (*ENI, error) {
	return s.permission(p, id, in, true)
}

// Revoke removes a uid from one of a record's permission lists.
func (s *Service) Revoke(p Principal, id string, in PermissionInput) (*ENI, error) {
	return s.permission(p, id, in, false)
}

func (s *Service) permission(p Principal, id string, in PermissionInput, grant bool) (*ENI, error) {
	op := "RevokeNetworkInterfacePermission"
	if grant {
		op = "GrantNetworkInterfacePermission"
	}
	return update(s, p, op, func(tx *txn) (func() *ENI, error) {
		e, err := s.eniFor(tx, id, PermOwner)
		if err != nil {
			return nil, err
		}
		e = e.Clone()
		var list *[]uint32
		switch in.Permission {
		case PermOwner:
			list = &e.Permissions.Owners
		case PermAttach:
			list = &e.Permissions.Attachers
		case PermDetach:
			list = &e.Permissions.Detachers
		case PermSetIP:
			list = &e.Permissions.IPSetters
		default:
			return nil, invalid("permission", in.Permission, "want owner, attach, detach or set-ip")
		}
		has := slices.Contains(*list, in.UID)
		switch {
		case grant && has:
			return nil, errorf(CodeIncorrectState, "uid %d already has permission %s on %s", in.UID, in.Permission, id)
		case !grant && !has:
			return nil, errorf(CodeNotFound, "uid %d does not have permission %s on %s", in.UID, in.Permission, id)
		case grant:
			*list = insertSorted(*list, in.UID)
		default:
			*list = slices.DeleteFunc(*list, func(u uint32) bool { return u == in.UID })
		}
		tx.putENI(e)
		return s.eniViewFn(id), nil
	})
}

// ENIFilter selects records; empty fields match everything.
type ENIFilter struct {
	Instance  string `json:"instance_id,omitempty"`
	Subnet    string `json:"subnet_id,omitempty"`
	PrivateIP string `json:"private_ip,omitempty"`
	PublicIP  string `json:"public_ip,omitempty"`
	Status    string `json:"status,omitempty"`
	Group     string `json:"group,omitempty"`
}

// ENIs returns the records matching f, by id.
func (s *Service) ENIs(f ENIFilter) ([]*ENI, error) {
	var priv, pub netip.Addr
	var err error
	if f.PrivateIP != "" {
		if priv, err = parseAddr("private_ip", f.PrivateIP); err != nil {
			return nil, err
		}
	}
	if f.PublicIP != "" {
		if pub, err = parseAddr("public_ip", f.PublicIP); err != nil {
			return nil, err
		}
	}
	if f.Status != "" && f.Status != StatusAvailable && f.Status != StatusInUse && f.Status != StatusAttaching && f.Status != StatusDetaching {
		return nil, invalid("status", f.Status, "want available, in-use, attaching or detaching")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.st.view()
	var cands []*ENI
	switch {
	case priv.IsValid():
		if e := s.st.enis[s.st.ipOwner[priv]]; e != nil {
			cands = append(cands, e)
		}
	case pub.IsValid():
		if a := s.st.eips[s.st.eipPublic[pub]]; a != nil && a.ENIID != "" {
			cands = append(cands, s.st.enis[a.ENIID])
		}
	default:
		cands = make([]*ENI, 0, len(s.st.enis))
		for _, e := range s.st.enis {
			cands = append(cands, e)
		}
	}
	out := []*ENI{}
	for _, e := range cands {
		if f.Subnet != "" && e.SubnetID != f.Subnet {
			continue
		}
		if f.Group != "" && !slices.ContainsFunc(e.SecurityGroups, func(g string) bool {
			return g == f.Group || s.st.groups[g] != nil && s.st.groups[g].Name == f.Group
		}) {
			continue
		}
		if f.Instance != "" && !slices.ContainsFunc(e.Attachments, func(a Attachment) bool { return a.InstanceID == f.Instance }) {
			continue
		}
		ev := s.eniView(v, e)
		if f.Status != "" && ev.Status != f.Status {
			continue
		}
		out = append(out, ev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ENI returns one record.
func (s *Service) ENI(id string) (*ENI, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.st.enis[id]
	if e == nil {
		return nil, notFound("record", id)
	}
	return s.eniView(s.st.view(), e), nil
}

func (s *Service) eniView(tx *txn, e *ENI) *ENI {
	c := e.Clone()
	c.Status = StatusAvailable
	if len(c.Attachments) > 0 {
		c.Status = StatusInUse
	}
	c.Associations = []Association{}
	for _, ip := range c.PrivateIPs {
		if id := tx.eipByPrivate(ip); id != "" {
			c.Associations = append(c.Associations, Association{AllocationID: id, PublicIP: tx.eip(id).PublicIP, PrivateIP: ip})
		}
	}
	for i := range c.Attachments {
		a := &c.Attachments[i]
		if in := tx.instance(a.InstanceID); in != nil && a.DeviceIndex < len(in.Ports) {
			a.Port = in.Ports[a.DeviceIndex].Spec
		}
		if st, why := s.attachmentStatus(e, a); st != "" {
			a.Status, a.StatusReason = st, why
			c.Status = StatusAttaching
		}
	}
	if c.Tags == nil {
		c.Tags = map[string]string{}
	}
	return c
}
