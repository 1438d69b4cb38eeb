package control

import (
	"net/netip"
	"strings"
)

// Allocate takes a public IP from the pool (--public-cidr), never the
// gateway's own --public-ip nor the pool's network and broadcast addresses.
// Only root may.
func (s *Service) Allocate(p Principal, in AllocateInput) (*Address, error) {
	return update(s, p, "AllocateAddress", func(tx *txn) (func() *Address, error) {
		tx.target = in.Address
		if err := requireRoot(p, "allocate public ips"); err != nil {
			return nil, err
		}
		pool := s.gw.PublicCIDR
		if !pool.IsValid() {
			return nil, errorf(CodeIncorrectState, "no public pool: roamd runs without --public-cidr")
		}
		var ip netip.Addr
		if in.Address != "" {
			a, err := parseAddr("address", in.Address)
			if err != nil {
				return nil, err
			}
			if !pool.Contains(a) {
				return nil, invalid("address", a, "not in the public pool "+pool.String())
			}
			if why := s.unallocatable(a); why != "" {
				return nil, invalid("address", a, why)
			}
			if id := tx.eipByPublic(a); id != "" {
				return nil, errorf(CodeAddressInUse, "address %s is already allocated as %s", a, id)
			}
			ip = a
		} else {
			for a := pool.Addr(); pool.Contains(a); a = a.Next() {
				if s.unallocatable(a) == "" && tx.eipByPublic(a) == "" {
					ip = a
					break
				}
			}
			if !ip.IsValid() {
				return nil, errorf(CodeAddressLimit, "the public pool %s has no free address", pool)
			}
		}
		a := &Address{ID: s.newID(PrefixEIP, func(id string) bool { return tx.eip(id) != nil }), PublicIP: ip, CreatedAt: s.now().UTC()}
		tx.target = a.ID
		tx.putEIP(a)
		return func() *Address { return a.Clone() }, nil
	})
}

func (s *Service) unallocatable(a netip.Addr) string {
	pool := s.gw.PublicCIDR
	switch {
	case a == s.gw.PublicIP:
		return "the gateway's own public ip (--public-ip)"
	case pool.Bits() < 31 && a == pool.Addr():
		return "the network address of the pool"
	case pool.Bits() < 31 && a == lastAddr(pool):
		return "the broadcast address of the pool"
	}
	return ""
}

// resolveEIP finds an allocation by id or by public IP.
func resolveEIP(tx *txn, ref string) (*Address, error) {
	tx.target = ref
	if strings.HasPrefix(ref, PrefixEIP) {
		if a := tx.eip(ref); a != nil {
			return a, nil
		}
		return nil, notFound("public ip allocation", ref)
	}
	ip, err := netip.ParseAddr(ref)
	if err != nil {
		return nil, invalid("allocation_id", ref, "want eipalloc-XXXXXXXX or a public ip")
	}
	if id := tx.eipByPublic(ip); id != "" {
		tx.target = id
		return tx.eip(id), nil
	}
	return nil, notFound("public ip", ref)
}

// Release returns a public IP to the pool; refused while it is associated.
func (s *Service) Release(p Principal, ref string) (*Address, error) {
	return update(s, p, "ReleaseAddress", func(tx *txn) (func() *Address, error) {
		if err := requireRoot(p, "release public ips"); err != nil {
			return nil, err
		}
		a, err := resolveEIP(tx, ref)
		if err != nil {
			return nil, err
		}
		if a.ENIID != "" {
			return nil, errorf(CodeDependencyViolation, "public ip %s (%s) is associated with %s (%s); disassociate it first", a.PublicIP, a.ID, a.ENIID, a.PrivateIP)
		}
		tx.delEIP(a.ID)
		return func() *Address { return a.Clone() }, nil
	})
}

// Associate binds a public IP 1:1 to a private IP of a record. Refused when
// the public IP is associated elsewhere, or the private IP has another
// public IP, unless AllowReassociation. Root, or a uid that may set IPs on
// the record (and on the record it is taken from), may.
func (s *Service) Associate(p Principal, ref string, in AssociateInput) (*Address, error) {
	return update(s, p, "AssociateAddress", func(tx *txn) (func() *Address, error) {
		a, err := resolveEIP(tx, ref)
		if err != nil {
			return nil, err
		}
		e := tx.eni(in.ENIID)
		if e == nil {
			return nil, notFound("record", in.ENIID)
		}
		if err := authorize(p, e, PermSetIP); err != nil {
			return nil, err
		}
		priv := e.PrivateIP
		if in.PrivateIP != "" {
			if priv, err = parseAddr("private_ip", in.PrivateIP); err != nil {
				return nil, err
			}
			if !e.HasIP(priv) {
				return nil, invalid("private_ip", priv, "not an address of "+e.ID)
			}
		}
		if a.ENIID == e.ID && a.PrivateIP == priv {
			return nil, errorf(CodeIncorrectState, "public ip %s is already associated with %s (%s)", a.PublicIP, e.ID, priv)
		}
		if a.ENIID != "" {
			if !in.AllowReassociation {
				return nil, errorf(CodeAddressInUse, "public ip %s (%s) is associated with %s (%s); use allow_reassociation to move it", a.PublicIP, a.ID, a.ENIID, a.PrivateIP)
			}
			if old := tx.eni(a.ENIID); old != nil && old.ID != e.ID {
				if err := authorize(p, old, PermSetIP); err != nil {
					return nil, err
				}
			}
		}
		if other := tx.eipByPrivate(priv); other != "" && other != a.ID {
			if !in.AllowReassociation {
				return nil, errorf(CodeAddressInUse, "private_ip %s of %s already has public ip %s (%s); use allow_reassociation to replace it", priv, e.ID, tx.eip(other).PublicIP, other)
			}
			o := tx.eip(other).Clone()
			o.ENIID, o.PrivateIP = "", netip.Addr{}
			tx.putEIP(o)
		}
		a = a.Clone()
		a.ENIID, a.PrivateIP = e.ID, priv
		tx.putEIP(a)
		return func() *Address { return a.Clone() }, nil
	})
}

// Disassociate unbinds a public IP from its record.
func (s *Service) Disassociate(p Principal, ref string) (*Address, error) {
	return update(s, p, "DisassociateAddress", func(tx *txn) (func() *Address, error) {
		a, err := resolveEIP(tx, ref)
		if err != nil {
			return nil, err
		}
		if a.ENIID == "" {
			return nil, errorf(CodeIncorrectState, "public ip %s (%s) is not associated", a.PublicIP, a.ID)
		}
		if e := tx.eni(a.ENIID); e != nil {
			if err := authorize(p, e, PermSetIP); err != nil {
				return nil, err
			}
		}
		a = a.Clone()
		a.ENIID, a.PrivateIP = "", netip.Addr{}
		tx.putEIP(a)
		return func() *Address { return a.Clone() }, nil
	})
}

// Addresses lists the public IP allocations, by id.
func (s *Service) Addresses() []*Address {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := sortedValues(s.st.eips)
	for i, a := range out {
		out[i] = a.Clone()
	}
	return out
}

// Address returns one allocation, by id or public IP.
func (s *Service) Address(ref string) (*Address, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, err := resolveEIP(s.st.view(), ref)
	if err != nil {
		return nil, err
	}
	return a.Clone(), nil
}

// Events returns up to limit audit events with id > after, oldest first.
func (s *Service) Events(after uint64, limit int) ([]Event, error) {
	evs, err := s.store.Events(after, limit)
	if err != nil {
		return nil, internal("read audit log", err)
	}
	if evs == nil {
		evs = []Event{}
	}
	return evs, nil
}

// Gen returns the generation of the committed state.
func (s *Service) Gen() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.gen
}
