package control

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Reads are scoped to the caller (issue 10, point 7). Root (and every
// administrator, see Principal.Admin) reads everything. Any other caller
// reads:
//
//   - the records it may read: those whose permission lists (owners,
//     attachers, detachers or ip setters) name its uid, with their
//     attachments and associations;
//   - the public IP allocations associated with those records (an
//     unassociated allocation belongs to the administrator);
//   - the audit events it caused, and those whose target is one of its
//     records (by id or by one of its private or public IPs);
//   - subnets and security groups, all of them (as a VPC-wide describe:
//     one needs them to create a record and they name no tenant);
//   - instances, all of them (a record is attached to one by name), but
//     a port attached to a record the caller may not read shows neither
//     the record nor the attachment.
//
// A record or allocation the caller may not read answers NotFound with the
// same message as one that does not exist, so that a read does not tell a
// stranger's object from no object. Mutating operations keep their
// Unauthorized answer (they name the object the caller asked for, and
// whoever guesses an ID or an address learns that it is taken, as creating
// a record at a taken address does).

// mayRead reports whether p may read record e.
func mayRead(p Principal, e *ENI) bool {
	if p.IsRoot() {
		return true
	}
	pm := &e.Permissions
	return slices.Contains(pm.Owners, p.UID) || slices.Contains(pm.Attachers, p.UID) ||
		slices.Contains(pm.Detachers, p.UID) || slices.Contains(pm.IPSetters, p.UID)
}

// Scope is the committed state as one caller may read it (Service.As).
type Scope struct {
	s *Service
	p Principal
}

// As returns the reads of caller p.
func (s *Service) As(p Principal) Scope { return Scope{s: s, p: p} }

// Principal returns the caller the scope reads for.
func (sc Scope) Principal() Principal { return sc.p }

// ENIs returns the records matching f that the caller may read, by id.
func (sc Scope) ENIs(f ENIFilter) ([]*ENI, error) {
	all, err := sc.s.ENIs(f)
	if err != nil || sc.p.IsRoot() {
		return all, err
	}
	out := all[:0]
	for _, e := range all {
		if mayRead(sc.p, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// ENI returns one record; NotFound when the caller may not read it.
func (sc Scope) ENI(id string) (*ENI, error) {
	e, err := sc.s.ENI(id)
	if err != nil {
		return nil, err
	}
	if !mayRead(sc.p, e) {
		return nil, notFound("record", id)
	}
	return e, nil
}

// ReadableENIs returns the ids of the records the caller may read, sorted.
func (sc Scope) ReadableENIs() []string {
	s := sc.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ids []string
	for id, e := range s.st.enis {
		if mayRead(sc.p, e) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// mayReadEIPLocked reports whether the caller may read allocation a: root,
// or a is associated with a record the caller may read. s.mu is held.
func (sc Scope) mayReadEIPLocked(a *Address) bool {
	if sc.p.IsRoot() {
		return true
	}
	e := sc.s.st.enis[a.ENIID]
	return a.ENIID != "" && e != nil && mayRead(sc.p, e)
}

// Addresses lists the allocations the caller may read, by id.
func (sc Scope) Addresses() []*Address {
	s := sc.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []*Address{}
	for _, a := range sortedValues(s.st.eips) {
		if sc.mayReadEIPLocked(a) {
			out = append(out, a.Clone())
		}
	}
	return out
}

// Address returns one allocation, by id or public IP; NotFound when the
// caller may not read it.
func (sc Scope) Address(ref string) (*Address, error) {
	s := sc.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, err := resolveEIP(s.st.view(), ref)
	if err != nil {
		return nil, err
	}
	if !sc.mayReadEIPLocked(a) {
		if strings.HasPrefix(ref, PrefixEIP) {
			return nil, notFound("public ip allocation", ref)
		}
		return nil, notFound("public ip", ref)
	}
	return a.Clone(), nil
}

// redactInstanceLocked removes from in (a view) the attachments of records
// the caller may not read. s.mu is held.
func (sc Scope) redactInstanceLocked(in *Instance) *Instance {
	if sc.p.IsRoot() {
		return in
	}
	in.Attachments = []string{}
	for i := range in.Ports {
		pt := &in.Ports[i]
		if pt.ENIID == "" {
			continue
		}
		if e := sc.s.st.enis[pt.ENIID]; e == nil || !mayRead(sc.p, e) {
			pt.ENIID, pt.AttachmentID = "", ""
			continue
		}
		in.Attachments = append(in.Attachments, pt.AttachmentID)
	}
	return in
}

// Instances lists the instances, by name, without the attachments of
// records the caller may not read.
func (sc Scope) Instances() []*Instance {
	s := sc.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.st.view()
	out := sortedValues(s.st.instances)
	for i, in := range out {
		out[i] = sc.redactInstanceLocked(s.instanceView(v, in))
	}
	return out
}

// Instance returns one instance, without the attachments of records the
// caller may not read.
func (sc Scope) Instance(name string) (*Instance, error) {
	s := sc.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	in := s.st.instances[name]
	if in == nil {
		return nil, notFound("instance", name)
	}
	return sc.redactInstanceLocked(s.instanceView(s.st.view(), in)), nil
}

// mayReadEventLocked reports whether the caller may read ev: it caused it,
// or its target is one of the caller's records, by id or by one of the
// record's private or public IPs or allocations. s.mu is held.
func (sc Scope) mayReadEventLocked(ev *Event) bool {
	if sc.p.IsRoot() || ev.UID == sc.p.UID {
		return true
	}
	st := sc.s.st
	if e := st.enis[ev.Target]; e != nil {
		return mayRead(sc.p, e)
	}
	if a := st.eips[ev.Target]; a != nil {
		return sc.mayReadEIPLocked(a)
	}
	if ip, err := netip.ParseAddr(ev.Target); err == nil {
		if e := st.enis[st.ipOwner[ip]]; e != nil {
			return mayRead(sc.p, e)
		}
		if a := st.eips[st.eipPublic[ip]]; a != nil {
			return sc.mayReadEIPLocked(a)
		}
	}
	return false
}

// eventBatch is how many events Events reads from the store at a time
// while it skips those the caller may not read.
const eventBatch = 256

// Events returns up to limit audit events with id > after that the caller
// may read, oldest first (limit 0: all of them).
func (sc Scope) Events(after uint64, limit int) ([]Event, error) {
	if sc.p.IsRoot() {
		return sc.s.Events(after, limit)
	}
	out := []Event{}
	for {
		evs, err := sc.s.Events(after, eventBatch)
		if err != nil {
			return nil, err
		}
		sc.s.mu.RLock()
		for i := range evs {
			if sc.mayReadEventLocked(&evs[i]) {
				out = append(out, evs[i])
				if limit > 0 && len(out) == limit {
					break
				}
			}
		}
		sc.s.mu.RUnlock()
		if len(evs) < eventBatch || limit > 0 && len(out) == limit {
			return out, nil
		}
		after = evs[len(evs)-1].ID
	}
}

// Dump returns the committed state the caller may read. The invariant
// check (Problems) names objects of every owner: only root gets it.
func (sc Scope) Dump() *Dump {
	s := sc.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.st.view()
	d := &Dump{Gen: s.st.gen, Subnets: []*Subnet{}, SecurityGroups: []*Group{}, Instances: []*Instance{}, ENIs: []*ENI{}, EIPs: []*Address{}}
	if sc.p.IsRoot() {
		d.Problems = s.checkLocked()
	}
	for _, x := range sortedValues(s.st.subnets) {
		d.Subnets = append(d.Subnets, x.Clone())
	}
	for _, x := range sortedValues(s.st.groups) {
		d.SecurityGroups = append(d.SecurityGroups, x.Clone())
	}
	for _, x := range sortedValues(s.st.instances) {
		d.Instances = append(d.Instances, sc.redactInstanceLocked(s.instanceView(v, x)))
	}
	for _, x := range sortedValues(s.st.enis) {
		if mayRead(sc.p, x) {
			d.ENIs = append(d.ENIs, s.eniView(v, x))
		}
	}
	for _, x := range sortedValues(s.st.eips) {
		if sc.mayReadEIPLocked(x) {
			d.EIPs = append(d.EIPs, x.Clone())
		}
	}
	return d
}

// Flows lists the conntrack entries of record eniID (NotFound when the
// caller may not read it) or, with eniID "", of every record the caller
// may read (root: the whole table).
func (sc Scope) Flows(insp Inspector, eniID string) ([]Flow, error) {
	ids, err := sc.inspected(eniID)
	if err != nil {
		return nil, err
	}
	if ids == nil {
		return insp.Flows(eniID), nil
	}
	out := []Flow{}
	if len(ids) <= perRecordScans {
		for _, id := range ids {
			out = append(out, insp.Flows(id)...)
		}
		return out, nil
	}
	// One listing of the table costs less than a scan per record.
	for _, f := range insp.Flows("") {
		if _, ok := slices.BinarySearch(ids, f.ENIID); ok {
			out = append(out, f)
		}
	}
	return out, nil
}

// perRecordScans is how many records' flows Flows lists one record at a
// time (each a scan of the table) before it lists the table once instead.
const perRecordScans = 4

// Stats returns the counters of record eniID (NotFound when the caller may
// not read it) or, with eniID "", the sum of the counters of every record
// the caller may read, with the ID "uid:N" (root: the switch's own).
func (sc Scope) Stats(insp Inspector, eniID string) (Stats, error) {
	ids, err := sc.inspected(eniID)
	if err != nil {
		return Stats{}, err
	}
	if ids == nil {
		return insp.Stats(eniID), nil
	}
	sum := Stats{ID: "uid:" + strconv.FormatUint(uint64(sc.p.UID), 10), Drops: map[string]uint64{}}
	for _, id := range ids {
		c := insp.Stats(id)
		sum.PacketsIn += c.PacketsIn
		sum.PacketsOut += c.PacketsOut
		sum.BytesIn += c.BytesIn
		sum.BytesOut += c.BytesOut
		sum.Packets += c.Packets
		sum.Forwarded += c.Forwarded
		sum.Flows += c.Flows
		sum.Translations += c.Translations
		for r, n := range c.Drops {
			sum.Drops[r] += n
		}
	}
	return sum, nil
}

// inspected returns the records whose data path tables a read of eniID
// covers: nil when the inspector's own answer for eniID is right (root, or
// a record the caller may read), else the caller's records.
func (sc Scope) inspected(eniID string) ([]string, error) {
	if eniID != "" {
		if _, err := sc.ENI(eniID); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if sc.p.IsRoot() {
		return nil, nil
	}
	ids := sc.ReadableENIs()
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}
