package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"time"

	vswitch "roam/switch"
)

// txn is one operation in progress: reads see the committed state overlaid
// with the operation's own changes; nothing reaches the committed state, the
// store or the data path until commit. A nil value in a change map is a
// deletion.
type txn struct {
	st        *state
	p         Principal
	subnets   map[string]*Subnet
	groups    map[string]*Group
	instances map[string]*Instance
	enis      map[string]*ENI
	eips      map[string]*Address

	target   string          // the object the audit log names
	cfgDirty bool            // subnets or groups changed
	dirty    map[string]bool // records whose data path form changed
	// Host effects, staged by validation and run after the commit outside
	// Service.mu (effects.go): pre before the records in hold get their
	// new binding in the data path, post after it.
	pre, post []hostEffect
	hold      map[string]bool
	// early effects run before the commit, outside Service.mu, and the
	// operation is validated again after them (opening a new instance's
	// ports: a port that cannot be opened refuses it before anything is
	// written).
	early     []hostEffect
	prev      *txn // the values tx replaced, when it has effects
	noEffects bool // a compensating commit: no effects of its own

	// result and message, when set, replace "ok" in the audit event.
	result, message string
}

func (st *state) view() *txn { return st.txn(Root) }

func (st *state) txn(p Principal) *txn {
	return &txn{
		st: st, p: p,
		subnets: map[string]*Subnet{}, groups: map[string]*Group{}, instances: map[string]*Instance{},
		enis: map[string]*ENI{}, eips: map[string]*Address{}, dirty: map[string]bool{}, hold: map[string]bool{},
	}
}

func get[T any](base, ch map[string]*T, id string) *T {
	if v, ok := ch[id]; ok {
		return v
	}
	return base[id]
}

func each[T any](base, ch map[string]*T, fn func(*T)) {
	for id, v := range base {
		if _, ok := ch[id]; !ok {
			fn(v)
		}
	}
	for _, v := range ch {
		if v != nil {
			fn(v)
		}
	}
}

func (tx *txn) subnet(id string) *Subnet     { return get(tx.st.subnets, tx.subnets, id) }
func (tx *txn) group(id string) *Group       { return get(tx.st.groups, tx.groups, id) }
func (tx *txn) instance(id string) *Instance { return get(tx.st.instances, tx.instances, id) }
func (tx *txn) eni(id string) *ENI           { return get(tx.st.enis, tx.enis, id) }
func (tx *txn) eip(id string) *Address       { return get(tx.st.eips, tx.eips, id) }

func (tx *txn) putSubnet(v *Subnet) { tx.subnets[v.ID] = v; tx.cfgDirty = true }
func (tx *txn) delSubnet(id string) { tx.subnets[id] = nil; tx.cfgDirty = true }
func (tx *txn) putGroup(v *Group)   { tx.groups[v.ID] = v; tx.cfgDirty = true }
func (tx *txn) delGroup(id string)  { tx.groups[id] = nil; tx.cfgDirty = true }
func (tx *txn) putInstance(v *Instance) {
	tx.instances[v.ID] = v
}
func (tx *txn) delInstance(id string) { tx.instances[id] = nil }
func (tx *txn) putENI(v *ENI)         { tx.enis[v.ID] = v; tx.dirty[v.ID] = true }
func (tx *txn) delENI(id string)      { tx.enis[id] = nil; tx.dirty[id] = true }

func (tx *txn) putEIP(v *Address) {
	if old := tx.eip(v.ID); old != nil && old.ENIID != "" {
		tx.dirty[old.ENIID] = true
	}
	if v.ENIID != "" {
		tx.dirty[v.ENIID] = true
	}
	tx.eips[v.ID] = v
}

func (tx *txn) delEIP(id string) {
	if old := tx.eip(id); old != nil && old.ENIID != "" {
		tx.dirty[old.ENIID] = true
	}
	tx.eips[id] = nil
}

// ipOwner returns the record holding the private IP, or "".
func (tx *txn) ipOwner(ip netip.Addr) string {
	for id, e := range tx.enis {
		if e != nil && e.HasIP(ip) {
			return id
		}
	}
	id := tx.st.ipOwner[ip]
	if _, changed := tx.enis[id]; changed {
		return ""
	}
	return id
}

// slotOwner returns the record attached at (instance, device index), or "".
func (tx *txn) slotOwner(inst string, idx int) (string, *Attachment) {
	for id, e := range tx.enis {
		if e == nil {
			continue
		}
		for i := range e.Attachments {
			if a := &e.Attachments[i]; a.InstanceID == inst && a.DeviceIndex == idx {
				return id, a
			}
		}
	}
	id := tx.st.slots[slot{inst, idx}]
	if _, changed := tx.enis[id]; changed || id == "" {
		return "", nil
	}
	e := tx.st.enis[id]
	for i := range e.Attachments {
		if a := &e.Attachments[i]; a.InstanceID == inst && a.DeviceIndex == idx {
			return id, a
		}
	}
	return "", nil
}

func (tx *txn) macUsed(mac string) bool {
	for _, e := range tx.enis {
		if e != nil && e.MAC == mac {
			return true
		}
	}
	id := tx.st.macs[mac]
	_, changed := tx.enis[id]
	return id != "" && !changed
}

func (tx *txn) eipByPublic(ip netip.Addr) string {
	for id, a := range tx.eips {
		if a != nil && a.PublicIP == ip {
			return id
		}
	}
	id := tx.st.eipPublic[ip]
	if _, changed := tx.eips[id]; changed {
		return ""
	}
	return id
}

func (tx *txn) eipByPrivate(ip netip.Addr) string {
	for id, a := range tx.eips {
		if a != nil && a.ENIID != "" && a.PrivateIP == ip {
			return id
		}
	}
	id := tx.st.eipPrivate[ip]
	if _, changed := tx.eips[id]; changed {
		return ""
	}
	return id
}

func (tx *txn) specOwner(spec string) string {
	for id, in := range tx.instances {
		if in != nil && slices.ContainsFunc(in.Ports, func(p Port) bool { return p.Spec == spec }) {
			return id
		}
	}
	id := tx.st.specs[spec]
	if _, changed := tx.instances[id]; changed {
		return ""
	}
	return id
}

func (tx *txn) idUsed(id string) bool {
	return tx.subnet(id) != nil || tx.group(id) != nil || tx.eni(id) != nil || tx.eip(id) != nil
}

func (tx *txn) attachmentUsed(id string) bool {
	for _, e := range tx.enis {
		if e != nil {
			if _, a := e.FindAttachment(id); a != nil {
				return true
			}
		}
	}
	owner := tx.st.attachIDs[id]
	_, changed := tx.enis[owner]
	return owner != "" && !changed
}

func (s *Service) id(tx *txn, prefix string) string {
	if prefix == PrefixAttachment {
		return s.newID(prefix, tx.attachmentUsed)
	}
	return s.newID(prefix, tx.idUsed)
}

// maxConflictRetries bounds how often an operation is re-validated and
// retried after a generation conflict.
const maxConflictRetries = 5

// update runs fn as one transaction: validate and stage changes (fn),
// persist them with an audit event, publish a new data path config, then
// install them, all under s.mu; then, with s.mu released, run the host
// effects fn staged and wait for them (effects.go). A commit refused for a
// stale generation (another writer of the store) is retried on the caught
// up state, fn included. A refusal at any step changes nothing but the
// audit log.
func update[T any](s *Service, p Principal, op string, fn func(tx *txn) (func() T, error)) (T, error) {
	start := time.Now()
	var zero T
	s.mu.Lock()
	var (
		tx    *txn
		view  func() T
		err   error
		early []*fxJob // the early effects that ran
	)
	for attempt := 1; ; attempt++ {
		tx = s.st.txn(p)
		view, err = fn(tx)
		if err == nil && len(tx.early) > 0 && early == nil {
			s.mu.Unlock()
			for _, fx := range tx.early {
				early = append(early, s.fx.enqueue(fx, fx.do))
			}
			all := waitJobs(early, time.After(s.fxWait))
			s.mu.Lock()
			if e := definite(early); e != nil {
				err = e
			} else if !all || failedJobs(early) != nil {
				err = errorf(CodeIncorrectState, "%s: %s", op, s.reason(early, all))
			} else {
				attempt--
				continue // validate again on the state of now
			}
		}
		if err == nil {
			if o := s.busyLocked(tx); o != nil {
				// A record it changes has host effects in flight:
				// validate again once they settle.
				if time.Since(start) > 2*s.fxWait {
					err = errorf(CodeIncorrectState, "%s: the host effects of %s on %s are still in progress; try again", op, o.op, o.target)
					break
				}
				s.mu.Unlock()
				select {
				case <-o.published:
				case <-o.failedCh:
				case <-time.After(s.fxWait):
				}
				s.mu.Lock()
				attempt--
				continue
			}
			err = s.commitLocked(tx, op)
		}
		if !errors.Is(err, ErrConflict) {
			break
		}
		if attempt == maxConflictRetries {
			err = &Error{Code: CodeConflict, Message: fmt.Sprintf("%s: the store changed under the operation %d times in a row (other writers); try again: %v", op, attempt, err), Cause: err}
			break
		}
		s.log.Info("generation conflict, catching up", "op", op, "attempt", attempt, "err", err)
		s.catchUpLocked(err)
	}
	var fx *opEffects
	if err == nil {
		fx = s.startEffectsLocked(tx, op)
	}
	s.mu.Unlock()
	if err != nil && early != nil {
		s.undoEffects(nil, early)
	}
	if err == nil && fx != nil {
		err = s.finishEffects(fx)
	}
	result := "ok"
	if err != nil {
		e := AsError(err)
		result = e.Code
		if e.Code != CodeInternal && (fx == nil || !fx.audited) {
			// Refusals are audited on their own (nothing was
			// committed), refused effects by their compensating
			// commit; internal failures are not (the store failed).
			ev := &Event{Time: s.now().UTC(), UID: p.UID, Operation: op, Target: tx.target, Result: e.Code, Message: e.Message}
			if aerr := s.store.AppendEvent(ev); aerr != nil {
				s.log.Error("audit log append failed", "op", op, "err", aerr)
			}
		}
		s.log.Info("operation refused", "op", op, "uid", p.UID, "target", tx.target, "code", e.Code, "msg", e.Message)
		if s.observe != nil {
			s.observe(op, result, time.Since(start))
		}
		return zero, e
	}
	s.mu.RLock()
	s.log.Info("operation", "op", op, "uid", p.UID, "target", tx.target, "gen", s.st.gen)
	out := view()
	s.mu.RUnlock()
	if s.observe != nil {
		s.observe(op, result, time.Since(start))
	}
	return out, nil
}

func marshalStored(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("control: marshal stored object: " + err.Error())
	}
	return b
}

func storedENI(e *ENI) *ENI {
	c := *e
	c.Status = ""
	c.Associations = nil
	c.Attachments = slices.Clone(e.Attachments)
	for i := range c.Attachments {
		c.Attachments[i].Port = ""
	}
	return &c
}

func storedInstance(in *Instance) *Instance {
	c := *in
	c.Attachments = nil
	c.Ports = make([]Port, len(in.Ports))
	for i, p := range in.Ports {
		c.Ports[i] = Port{DeviceIndex: p.DeviceIndex, Spec: p.Spec, Hotplug: p.Hotplug}
	}
	return &c
}

func mutations[T any](bucket string, ch map[string]*T, conv func(*T) any) []Mutation {
	var out []Mutation
	for id, v := range ch {
		m := Mutation{Bucket: bucket, Key: id}
		if v != nil {
			m.Value = marshalStored(conv(v))
		}
		out = append(out, m)
	}
	return out
}

// back returns the committed values of everything tx changed: committing
// them undoes tx.
func (tx *txn) back() *txn {
	back := tx.st.txn(tx.p)
	for id := range tx.subnets {
		back.subnets[id] = tx.st.subnets[id]
	}
	for id := range tx.groups {
		back.groups[id] = tx.st.groups[id]
	}
	for id := range tx.instances {
		back.instances[id] = tx.st.instances[id]
	}
	for id := range tx.enis {
		back.enis[id] = tx.st.enis[id]
	}
	for id := range tx.eips {
		back.eips[id] = tx.st.eips[id]
	}
	return back
}

func (tx *txn) mutations() []Mutation {
	id := func(v any) any { return v }
	var m []Mutation
	m = append(m, mutations(bucketSubnets, tx.subnets, func(v *Subnet) any { return id(v) })...)
	m = append(m, mutations(bucketGroups, tx.groups, func(v *Group) any { return id(v) })...)
	m = append(m, mutations(bucketInstances, tx.instances, func(v *Instance) any { return storedInstance(v) })...)
	m = append(m, mutations(bucketENIs, tx.enis, func(v *ENI) any { return storedENI(v) })...)
	m = append(m, mutations(bucketEIPs, tx.eips, func(v *Address) any { return id(v) })...)
	sort.Slice(m, func(i, j int) bool {
		if m[i].Bucket != m[j].Bucket {
			return m[i].Bucket < m[j].Bucket
		}
		return m[i].Key < m[j].Key
	})
	return m
}

func (tx *txn) empty() bool {
	return len(tx.subnets)+len(tx.groups)+len(tx.instances)+len(tx.enis)+len(tx.eips) == 0
}

// commitLocked publishes the config of the state with tx's changes, then
// persists tx (if the store is still at the state's generation: otherwise
// the error wraps ErrConflict) and installs it in the committed state.
// Publishing first means a refusal by the data path writes nothing; a
// commit that fails after the publication republishes the state in force.
// The data path lives in this process, so a crash in between loses
// nothing: the restart publishes what the store holds.
func (s *Service) commitLocked(tx *txn, op string) error {
	if tx.empty() {
		return nil
	}
	st := s.st
	s.holdForEffects(tx)
	recs, override, cfg, err := s.publishTxLocked(tx)
	if err != nil {
		return &Error{Code: CodeDataPath, Message: fmt.Sprintf("the data path refused the configuration of %s: %v", op, err), Cause: err}
	}
	ev := &Event{Time: s.now().UTC(), UID: tx.p.UID, Operation: op, Target: tx.target, Result: "ok"}
	if tx.result != "" {
		ev.Result, ev.Message = tx.result, tx.message
	}
	gen, err := s.store.Commit(st.gen, tx.mutations(), ev)
	if err != nil {
		if cfg != s.last {
			s.republishLocked(tx)
		}
		if errors.Is(err, ErrConflict) {
			return err
		}
		return internal("persist "+op, err)
	}
	s.installLocked(tx, gen, recs, override)
	s.last = cfg
	return nil
}

// republishLocked publishes the state in force again after a publication
// of tx whose commit failed.
func (s *Service) republishLocked(tx *txn) {
	back := s.st.txn(Root)
	back.cfgDirty = tx.cfgDirty
	for id := range tx.dirty {
		back.dirty[id] = true
	}
	if _, _, _, err := s.publishTxLocked(back); err != nil {
		s.log.Error("republish the state in force after a failed commit", "err", err)
	}
}

// publishLocked publishes the config of the committed state with tx's
// changes, then installs them as generation gen. A refusal by the data
// path installs nothing.
func (s *Service) publishLocked(tx *txn, gen uint64) error {
	recs, override, cfg, err := s.publishTxLocked(tx)
	if err != nil {
		return err
	}
	s.installLocked(tx, gen, recs, override)
	s.last = cfg
	return nil
}

// publishTxLocked builds the config of the committed state with tx's
// changes and publishes it when it differs from the last one.
func (s *Service) publishTxLocked(tx *txn) ([]vswitch.Record, map[string]int, *vswitch.Config, error) {
	st := s.st
	recs, override := st.recs, map[string]int(nil)
	cfg := s.last
	if tx.cfgDirty || len(tx.dirty) > 0 {
		recs, override = s.records(tx)
		cfg = s.config(tx, s.nextPub(), recs)
		var err error
		if da, ok := s.dp.(DeltaApplier); ok && !tx.cfgDirty {
			changed := make([]string, 0, len(tx.dirty))
			for id := range tx.dirty {
				changed = append(changed, id)
			}
			sort.Strings(changed)
			err = da.ApplyDelta(cfg, changed)
		} else {
			err = s.dp.Apply(cfg)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		s.pub = cfg.Gen
	}
	return recs, override, cfg, nil
}

// nextPub is the Gen of the next published config: configs are numbered
// in publication order (a republication after host effects has no
// generation of its own), never below the state's generation.
func (s *Service) nextPub() uint64 { return max(s.pub+1, s.st.gen+1) }

// installLocked installs tx in the committed state as generation gen.
func (s *Service) installLocked(tx *txn, gen uint64, recs []vswitch.Record, override map[string]int) {
	st := s.st
	for id, v := range tx.subnets {
		setOrDelete(st.subnets, id, v)
	}
	for id, v := range tx.groups {
		setOrDelete(st.groups, id, v)
	}
	for id, v := range tx.instances {
		if old := st.instances[id]; old != nil {
			st.indexInstance(old, false)
		}
		setOrDelete(st.instances, id, v)
		if v != nil {
			st.indexInstance(v, true)
		}
	}
	for id := range tx.enis {
		if old := st.enis[id]; old != nil {
			st.indexENI(old, false)
		}
	}
	for id, v := range tx.enis {
		setOrDelete(st.enis, id, v)
		if v != nil {
			st.indexENI(v, true)
		}
	}
	for id := range tx.eips {
		if old := st.eips[id]; old != nil {
			st.indexEIP(old, false)
		}
	}
	for id, v := range tx.eips {
		setOrDelete(st.eips, id, v)
		if v != nil {
			st.indexEIP(v, true)
		}
	}
	st.recs = recs
	for id, i := range override {
		if i < 0 {
			delete(st.recIdx, id)
		} else {
			st.recIdx[id] = i
		}
	}
	st.gen = max(st.gen, gen)
}

func setOrDelete[T any](m map[string]*T, id string, v *T) {
	if v == nil {
		delete(m, id)
	} else {
		m[id] = v
	}
}

// records returns the Records of the next config: a copy of the last one
// with the dirty records rewritten, and the index changes to install.
func (s *Service) records(tx *txn) ([]vswitch.Record, map[string]int) {
	st := tx.st
	if len(tx.dirty) == 0 {
		return st.recs, nil
	}
	recs := slices.Clone(st.recs)
	override := map[string]int{}
	idx := func(id string) (int, bool) {
		if i, ok := override[id]; ok {
			return i, i >= 0
		}
		i, ok := st.recIdx[id]
		return i, ok
	}
	ids := make([]string, 0, len(tx.dirty))
	for id := range tx.dirty {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		e := tx.eni(id)
		i, ok := idx(id)
		if e == nil {
			if ok {
				last := len(recs) - 1
				moved := recs[last].ID
				recs[i] = recs[last]
				recs[last] = vswitch.Record{}
				recs = recs[:last]
				if moved != id {
					override[moved] = i
				}
				override[id] = -1
			}
			continue
		}
		r := s.record(tx, e)
		if s.held(tx, id) {
			// Its host effects are pending: it keeps the binding in
			// force (none for a new record) until they complete.
			if ok {
				r = recs[i]
			} else {
				r.Ports = nil
			}
		}
		if ok {
			recs[i] = r
		} else {
			override[id] = len(recs)
			recs = append(recs, r)
		}
	}
	return recs, override
}

// record is the data path form of a record.
func (s *Service) record(tx *txn, e *ENI) vswitch.Record {
	mac, _ := net.ParseMAC(e.MAC)
	r := vswitch.Record{
		ID:              e.ID,
		Subnet:          e.SubnetID,
		IPs:             e.PrivateIPs,
		MAC:             mac,
		Groups:          e.SecurityGroups,
		SourceDestCheck: e.SourceDestCheck,
		FlowBudget:      e.FlowBudget,
		FlowPolicy:      e.FlowPolicy,
	}
	for _, ip := range e.PrivateIPs {
		if id := tx.eipByPrivate(ip); id != "" {
			r.PublicIPs = append(r.PublicIPs, vswitch.Association{Public: tx.eip(id).PublicIP, Private: ip})
		}
	}
	for _, a := range e.Attachments {
		in := tx.instance(a.InstanceID)
		if in == nil || a.DeviceIndex >= len(in.Ports) {
			continue
		}
		if name := s.portUp(in.Ports[a.DeviceIndex].Spec); name != "" {
			r.Ports = append(r.Ports, name)
		}
	}
	return r
}

// config builds the whole data path configuration around recs.
func (s *Service) config(tx *txn, gen uint64, recs []vswitch.Record) *vswitch.Config {
	cfg := &vswitch.Config{
		Gen:         gen,
		GatewayMAC:  s.gw.GatewayMAC,
		PublicIP:    s.gw.PublicIP,
		PublicCIDR:  s.gw.PublicCIDR,
		Upstream:    s.gw.Upstream,
		UpstreamMAC: s.gw.UpstreamMAC,
		Records:     recs,
	}
	if s.uplnk != nil {
		cfg.Uplink = s.uplnk.Name()
	}
	var subnets []*Subnet
	each(tx.st.subnets, tx.subnets, func(v *Subnet) { subnets = append(subnets, v) })
	sort.Slice(subnets, func(i, j int) bool { return subnets[i].ID < subnets[j].ID })
	for _, sn := range subnets {
		cfg.Subnets = append(cfg.Subnets, vswitch.Subnet{ID: sn.ID, Prefix: sn.CIDR, MTU: sn.MTU, DNS: sn.DNS})
	}
	var groups []*Group
	each(tx.st.groups, tx.groups, func(v *Group) { groups = append(groups, v) })
	sort.Slice(groups, func(i, j int) bool { return groups[i].ID < groups[j].ID })
	for _, g := range groups {
		vg := vswitch.Group{ID: g.ID, Ingress: []vswitch.Rule{}, Egress: []vswitch.Rule{}}
		for _, r := range g.Ingress {
			vg.Ingress = append(vg.Ingress, switchRule(r))
		}
		for _, r := range g.Egress {
			vg.Egress = append(vg.Egress, switchRule(r))
		}
		cfg.Groups = append(cfg.Groups, vg)
	}
	return cfg
}

func switchRule(r Rule) vswitch.Rule {
	proto, _ := parseProtocol(r.Protocol)
	vr := vswitch.Rule{Proto: proto, CIDR: r.CIDR, Group: r.GroupID}
	switch proto {
	case 6, 17:
		vr.FromPort, vr.ToPort = uint16(r.FromPort), uint16(r.ToPort)
	case 1:
		vr.FromPort, vr.ToPort = 0xffff, 0xffff
		if r.FromPort >= 0 {
			vr.FromPort = uint16(r.FromPort)
		}
		if r.ToPort >= 0 {
			vr.ToPort = uint16(r.ToPort)
		}
	}
	return vr
}
