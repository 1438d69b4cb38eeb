package control

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
)

func requireRoot(p Principal, what string) error {
	if !p.IsRoot() {
		return errorf(CodeUnauthorized, "uid %d may not %s: only root (the administrator) may", p.UID, what)
	}
	return nil
}

// CreateSubnet creates a subnet. Only root may.
func (s *Service) CreateSubnet(p Principal, in CreateSubnetInput) (*Subnet, error) {
	return update(s, p, "CreateSubnet", func(tx *txn) (func() *Subnet, error) {
		tx.target = in.CIDR
		if err := requireRoot(p, "create subnets"); err != nil {
			return nil, err
		}
		pfx, err := netip.ParsePrefix(in.CIDR)
		if err != nil || !pfx.Addr().Is4() {
			return nil, errorf(CodeInvalidSubnet, "cidr %q: not an IPv4 CIDR such as 10.0.0.0/24", in.CIDR)
		}
		if pfx != pfx.Masked() {
			return nil, errorf(CodeInvalidSubnet, "cidr %q: not a network address, did you mean %s?", in.CIDR, pfx.Masked())
		}
		if pfx.Bits() < 8 || pfx.Bits() > 29 {
			return nil, errorf(CodeInvalidSubnet, "cidr %q: prefix length must be between /8 and /29", in.CIDR)
		}
		var clash error
		each(tx.st.subnets, tx.subnets, func(o *Subnet) {
			if clash == nil && o.CIDR.Overlaps(pfx) {
				clash = errorf(CodeInvalidSubnet, "cidr %q overlaps %s of %s", in.CIDR, o.CIDR, o.ID)
			}
		})
		if clash != nil {
			return nil, clash
		}
		if s.gw.PublicCIDR.IsValid() && s.gw.PublicCIDR.Overlaps(pfx) {
			return nil, errorf(CodeInvalidSubnet, "cidr %q overlaps the public pool %s", in.CIDR, s.gw.PublicCIDR)
		}
		if s.gw.PublicIP.IsValid() && pfx.Contains(s.gw.PublicIP) {
			return nil, errorf(CodeInvalidSubnet, "cidr %q contains the gateway's public ip %s", in.CIDR, s.gw.PublicIP)
		}
		mtu := in.MTU
		if mtu == 0 {
			mtu = 1500
		}
		if mtu < 576 || mtu > 9000 {
			return nil, invalid("mtu", in.MTU, "must be between 576 and 9000")
		}
		var dns []netip.Addr
		for _, d := range in.DNS {
			a, err := parseAddr("dns", d)
			if err != nil {
				return nil, err
			}
			dns = append(dns, a)
		}
		if err := validText("description", in.Description); err != nil {
			return nil, err
		}
		if err := validTags(in.Tags); err != nil {
			return nil, err
		}
		sn := &Subnet{
			ID: s.newID(PrefixSubnet, func(id string) bool { return tx.subnet(id) != nil }), CIDR: pfx,
			Gateway: pfx.Addr().Next(), MTU: mtu, DNS: dns, Description: in.Description,
			Tags: cloneMap(in.Tags), CreatedAt: s.now().UTC(),
		}
		tx.target = sn.ID
		tx.putSubnet(sn)
		return func() *Subnet { return sn.Clone() }, nil
	})
}

// DeleteSubnet deletes a subnet no record uses.
func (s *Service) DeleteSubnet(p Principal, id string) (*Subnet, error) {
	return update(s, p, "DeleteSubnet", func(tx *txn) (func() *Subnet, error) {
		tx.target = id
		if err := requireRoot(p, "delete subnets"); err != nil {
			return nil, err
		}
		sn := tx.subnet(id)
		if sn == nil {
			return nil, notFound("subnet", id)
		}
		var users []string
		each(tx.st.enis, tx.enis, func(e *ENI) {
			if e.SubnetID == id {
				users = append(users, e.ID)
			}
		})
		if len(users) > 0 {
			sort.Strings(users)
			return nil, errorf(CodeDependencyViolation, "subnet %s is used by %d record(s): %s", id, len(users), firstFew(users))
		}
		tx.delSubnet(id)
		return func() *Subnet { return sn.Clone() }, nil
	})
}

// Subnets lists the subnets, by id.
func (s *Service) Subnets() []*Subnet {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := sortedValues(s.st.subnets)
	for i, v := range out {
		out[i] = v.Clone()
	}
	return out
}

// Subnet returns one subnet.
func (s *Service) Subnet(id string) (*Subnet, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sn := s.st.subnets[id]
	if sn == nil {
		return nil, notFound("subnet", id)
	}
	return sn.Clone(), nil
}

// CreateGroup creates a security group that allows all egress and no
// ingress, as AWS does.
func (s *Service) CreateGroup(p Principal, in CreateGroupInput) (*Group, error) {
	return update(s, p, "CreateSecurityGroup", func(tx *txn) (func() *Group, error) {
		tx.target = in.Name
		if err := requireRoot(p, "create security groups"); err != nil {
			return nil, err
		}
		if in.Name != "" {
			if err := validName("name", in.Name); err != nil {
				return nil, err
			}
			var clash string
			each(tx.st.groups, tx.groups, func(g *Group) {
				if g.Name == in.Name {
					clash = g.ID
				}
			})
			if clash != "" {
				return nil, errorf(CodeAddressInUse, "name %q is already the name of %s", in.Name, clash)
			}
		}
		if err := validText("description", in.Description); err != nil {
			return nil, err
		}
		g := &Group{
			ID: s.newID(PrefixGroup, func(id string) bool { return tx.group(id) != nil }), Name: in.Name,
			Description: in.Description, Ingress: []Rule{}, CreatedAt: s.now().UTC(),
		}
		g.Egress = []Rule{{ID: s.newID(PrefixRule, func(string) bool { return false }), Direction: "egress",
			Protocol: "all", CIDR: netip.MustParsePrefix("0.0.0.0/0")}}
		tx.target = g.ID
		tx.putGroup(g)
		return func() *Group { return g.Clone() }, nil
	})
}

// DeleteGroup deletes a group that no record and no rule references.
func (s *Service) DeleteGroup(p Principal, id string) (*Group, error) {
	return update(s, p, "DeleteSecurityGroup", func(tx *txn) (func() *Group, error) {
		tx.target = id
		if err := requireRoot(p, "delete security groups"); err != nil {
			return nil, err
		}
		g := tx.group(id)
		if g == nil {
			return nil, notFound("security group", id)
		}
		var users []string
		each(tx.st.enis, tx.enis, func(e *ENI) {
			if slices.Contains(e.SecurityGroups, id) {
				users = append(users, e.ID)
			}
		})
		each(tx.st.groups, tx.groups, func(o *Group) {
			if o.ID == id {
				return
			}
			for _, r := range append(slices.Clone(o.Ingress), o.Egress...) {
				if r.GroupID == id {
					users = append(users, o.ID+"/"+r.ID)
				}
			}
		})
		if len(users) > 0 {
			sort.Strings(users)
			return nil, errorf(CodeDependencyViolation, "security group %s is used by %s", id, firstFew(users))
		}
		tx.delGroup(id)
		return func() *Group { return g.Clone() }, nil
	})
}

// AddRule adds a rule to a group. Tracked flows keep the verdict they got
// when they started (as in AWS); new flows see the new rule.
func (s *Service) AddRule(p Principal, groupID string, in RuleInput) (*Group, error) {
	return update(s, p, "AddSecurityGroupRule", func(tx *txn) (func() *Group, error) {
		tx.target = groupID
		if err := requireRoot(p, "change security groups"); err != nil {
			return nil, err
		}
		g := tx.group(groupID)
		if g == nil {
			return nil, notFound("security group", groupID)
		}
		r, err := s.rule(tx, in)
		if err != nil {
			return nil, err
		}
		g = g.Clone()
		list := &g.Ingress
		if r.Direction == "egress" {
			list = &g.Egress
		}
		for _, o := range *list {
			if o.Protocol == r.Protocol && o.FromPort == r.FromPort && o.ToPort == r.ToPort && o.CIDR == r.CIDR && o.GroupID == r.GroupID {
				return nil, errorf(CodeAddressInUse, "security group %s already has this %s rule as %s", groupID, r.Direction, o.ID)
			}
		}
		if len(*list) >= 100 {
			return nil, errorf(CodeAddressLimit, "security group %s already has 100 %s rules", groupID, r.Direction)
		}
		r.ID = s.newID(PrefixRule, func(id string) bool { return g.HasRule(id) })
		*list = append(*list, r)
		tx.putGroup(g)
		return func() *Group { return g.Clone() }, nil
	})
}

func (s *Service) rule(tx *txn, in RuleInput) (Rule, error) {
	r := Rule{Direction: in.Direction}
	if r.Direction != "ingress" && r.Direction != "egress" {
		return r, invalid("direction", in.Direction, "want ingress or egress")
	}
	proto, ok := parseProtocol(in.Protocol)
	if !ok {
		return r, invalid("protocol", in.Protocol, "want all, tcp, udp, icmp or a protocol number 0-255")
	}
	r.Protocol = canonicalProtocol(proto)
	switch proto {
	case 6, 17:
		r.FromPort, r.ToPort = 0, 65535
		if in.FromPort != nil {
			r.FromPort, r.ToPort = *in.FromPort, *in.FromPort
		}
		if in.ToPort != nil {
			r.ToPort = *in.ToPort
		}
		if r.FromPort < 0 || r.FromPort > 65535 || r.ToPort < r.FromPort || r.ToPort > 65535 {
			return r, invalid("port", strconv.Itoa(r.FromPort)+"-"+strconv.Itoa(r.ToPort), "want a range within 0-65535, from <= to")
		}
	case 1:
		r.FromPort, r.ToPort = -1, -1
		if in.FromPort != nil {
			r.FromPort = *in.FromPort
		}
		if in.ToPort != nil {
			r.ToPort = *in.ToPort
		}
		if r.FromPort < -1 || r.FromPort > 255 || r.ToPort < -1 || r.ToPort > 255 {
			return r, invalid("port", strconv.Itoa(r.FromPort)+"-"+strconv.Itoa(r.ToPort), "for icmp, from is the type and to the code, each -1 (any) or 0-255")
		}
	default:
		if in.FromPort != nil || in.ToPort != nil {
			return r, invalid("port", in.Protocol, "ports only apply to tcp, udp and icmp")
		}
	}
	switch {
	case in.CIDR != "" && in.GroupID != "":
		return r, invalid("cidr", in.CIDR, "give a cidr or a group, not both")
	case in.GroupID != "":
		if tx.group(in.GroupID) == nil {
			return r, notFound("security group", in.GroupID)
		}
		r.GroupID = in.GroupID
	default:
		c := in.CIDR
		if c == "" {
			c = "0.0.0.0/0"
		}
		pfx, err := netip.ParsePrefix(c)
		if err != nil || !pfx.Addr().Is4() {
			return r, invalid("cidr", in.CIDR, "not an IPv4 CIDR")
		}
		r.CIDR = pfx.Masked()
	}
	return r, nil
}

// RemoveRule removes a rule, by id, from a group.
func (s *Service) RemoveRule(p Principal, groupID, ruleID string) (*Group, error) {
	return update(s, p, "RemoveSecurityGroupRule", func(tx *txn) (func() *Group, error) {
		tx.target = groupID
		if err := requireRoot(p, "change security groups"); err != nil {
			return nil, err
		}
		g := tx.group(groupID)
		if g == nil {
			return nil, notFound("security group", groupID)
		}
		if !g.HasRule(ruleID) {
			return nil, notFound("rule", ruleID)
		}
		g = g.Clone()
		f := func(r Rule) bool { return r.ID == ruleID }
		g.Ingress = slices.DeleteFunc(g.Ingress, f)
		g.Egress = slices.DeleteFunc(g.Egress, f)
		tx.putGroup(g)
		return func() *Group { return g.Clone() }, nil
	})
}

// Groups lists the security groups, by id.
func (s *Service) Groups() []*Group {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := sortedValues(s.st.groups)
	for i, v := range out {
		out[i] = v.Clone()
	}
	return out
}

// Group returns one security group, by id or name.
func (s *Service) Group(id string) (*Group, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if g := s.st.groups[id]; g != nil {
		return g.Clone(), nil
	}
	for _, g := range s.st.groups {
		if g.Name == id {
			return g.Clone(), nil
		}
	}
	return nil, notFound("security group", id)
}

func firstFew(ids []string) string {
	if len(ids) > 5 {
		return joinComma(ids[:5]) + " and " + strconv.Itoa(len(ids)-5) + " more"
	}
	return joinComma(ids)
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out
}
