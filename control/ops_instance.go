package control

import (
	"fmt"
	"net/netip"
	"slices"
)

// MaxPorts is the most ports an instance may have.
const MaxPorts = 16

// CreateInstance creates an instance and opens its ports. Any uid may; the
// caller becomes its owner. A port that cannot be opened refuses the whole
// operation.
func (s *Service) CreateInstance(p Principal, in CreateInstanceInput) (*Instance, error) {
	return update(s, p, "CreateInstance", func(tx *txn) (func() *Instance, error) {
		tx.target = in.Name
		if err := validName("name", in.Name); err != nil {
			return nil, err
		}
		if tx.instance(in.Name) != nil {
			return nil, errorf(CodeAddressInUse, "name %q: instance already exists", in.Name)
		}
		if err := validQMP(in.QMP); err != nil {
			return nil, err
		}
		if (len(in.Ports) == 0 && in.QMP == "") || len(in.Ports) > MaxPorts {
			return nil, invalid("ports", len(in.Ports), fmt.Sprintf("an instance has 1 to %d ports (0 with a qmp monitor)", MaxPorts))
		}
		inst := &Instance{ID: in.Name, Name: in.Name, Owner: p.UID, CreatedAt: s.now().UTC(), QMP: in.QMP}
		for i, raw := range in.Ports {
			field := fmt.Sprintf("ports[%d]", i)
			sp, err := parseSpec(field, raw, false)
			if err != nil {
				return nil, err
			}
			spec := sp.String()
			if o := tx.specOwner(spec); o != "" {
				return nil, errorf(CodeAddressInUse, "%s %q is already a port of instance %s", field, spec, o)
			}
			if spec == s.gw.Uplink {
				return nil, errorf(CodeAddressInUse, "%s %q is the uplink", field, spec)
			}
			if slices.ContainsFunc(inst.Ports, func(p Port) bool { return p.Spec == spec }) {
				return nil, invalid(field, spec, "listed twice")
			}
			inst.Ports = append(inst.Ports, Port{DeviceIndex: i, Spec: spec})
		}
		for i, pt := range inst.Ports {
			// Opened before the commit, outside s.mu (the operation is
			// validated again after); a port that cannot be opened
			// refuses the operation.
			spec := pt.Spec
			var opened bool
			tx.early = append(tx.early, hostEffect{key: inst.ID, what: "open port " + spec,
				do: func() error {
					var err error
					if opened, err = s.openPort(spec); err != nil {
						return &Error{Code: CodeInvalidParameter,
							Message: fmt.Sprintf("ports[%d] %q: cannot open the port: %v", i, spec, err), Cause: err}
					}
					return nil
				},
				undo: func() {
					if opened {
						s.closePort(spec)
					}
				}})
		}
		tx.putInstance(inst)
		return func() *Instance { return s.instanceView(s.st.view(), inst) }, nil
	})
}

// TerminateInstance deletes an instance: each attached record whose
// attachment has DeleteOnTermination is deleted (its public IPs are
// disassociated) unless it is also attached to another instance; the others
// lose this attachment and, when it was their last, become available with
// all their settings.
// Root or the instance's owner may terminate it.
func (s *Service) TerminateInstance(p Principal, name string) (*Instance, error) {
	return update(s, p, "TerminateInstance", func(tx *txn) (func() *Instance, error) {
		tx.target = name
		inst := tx.instance(name)
		if inst == nil {
			return nil, notFound("instance", name)
		}
		if !p.IsRoot() && p.UID != inst.Owner {
			return nil, errorf(CodeUnauthorized, "uid %d may not terminate instance %s: it belongs to uid %d", p.UID, name, inst.Owner)
		}
		view := s.instanceView(tx, inst)
		for _, pt := range inst.Ports {
			id, a := tx.slotOwner(name, pt.DeviceIndex)
			if id == "" {
				continue
			}
			e := tx.eni(id)
			if a.DeleteOnTermination && len(e.Attachments) == 1 {
				// A record still attached elsewhere is kept: only this
				// attachment goes.
				if err := s.deleteENI(tx, e); err != nil {
					return nil, err
				}
				continue
			}
			e = e.Clone()
			e.Attachments = slices.DeleteFunc(e.Attachments, func(x Attachment) bool { return x.InstanceID == name })
			tx.putENI(e)
		}
		tx.delInstance(name)
		for _, pt := range inst.Ports {
			spec := pt.Spec
			tx.post = append(tx.post, hostEffect{key: name, what: "close port " + spec,
				do: func() error { s.closePort(spec); return nil }})
		}
		return func() *Instance { return view }, nil
	})
}

// Instances lists the instances, by name.
func (s *Service) Instances() []*Instance {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.st.view()
	out := sortedValues(s.st.instances)
	for i, in := range out {
		out[i] = s.instanceView(v, in)
	}
	return out
}

// Instance returns one instance.
func (s *Service) Instance(name string) (*Instance, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	in := s.st.instances[name]
	if in == nil {
		return nil, notFound("instance", name)
	}
	return s.instanceView(s.st.view(), in), nil
}

func (s *Service) instanceView(tx *txn, in *Instance) *Instance {
	c := in.Clone()
	c.Attachments = []string{}
	for i := range c.Ports {
		pt := &c.Ports[i]
		pt.Status = PortDown
		if id, _ := tx.slotOwner(in.ID, pt.DeviceIndex); pt.Hotplug && id == "" {
			pt.Status = PortUnplugged
		} else if op, ok := s.ports[pt.Spec]; ok {
			if op.port != nil {
				pt.Name = op.port.Name()
				if s.streamGone(pt.Spec) {
					pt.Error = "QEMU disconnected from the socket (the VM stopped)"
				} else if s.operational(pt.Spec) {
					pt.Status = PortUp
				} else {
					pt.Error = "the driver reports the port down"
				}
			} else if op.err != nil {
				pt.Error = op.err.Error()
			}
		}
		if id, a := tx.slotOwner(in.ID, pt.DeviceIndex); id != "" {
			pt.ENIID, pt.AttachmentID = id, a.ID
			c.Attachments = append(c.Attachments, a.ID)
		}
	}
	return c
}

// pickIndex returns the device index to attach at: want when given,
// otherwise the lowest free index whose port is up.
func (s *Service) pickIndex(tx *txn, inst *Instance, want *int) (int, error) {
	if want != nil {
		i := *want
		if i < 0 || i >= len(inst.Ports) {
			return 0, invalid("device_index", i, fmt.Sprintf("instance %s has device indexes 0 to %d", inst.ID, len(inst.Ports)-1))
		}
		if id, a := tx.slotOwner(inst.ID, i); id != "" {
			return 0, errorf(CodeAddressInUse, "device_index %d of instance %s is taken by %s (%s)", i, inst.ID, id, a.ID)
		}
		if !s.operational(inst.Ports[i].Spec) {
			return 0, errorf(CodeIncorrectState, "device_index %d of instance %s: port %s is not operational%s", i, inst.ID, inst.Ports[i].Spec, s.portErr(inst.Ports[i].Spec))
		}
		return i, nil
	}
	var down []string
	for _, pt := range inst.Ports {
		if id, _ := tx.slotOwner(inst.ID, pt.DeviceIndex); id == "" {
			if s.operational(pt.Spec) {
				return pt.DeviceIndex, nil
			}
			down = append(down, pt.Spec)
		}
	}
	if len(down) > 0 {
		return 0, errorf(CodeIncorrectState, "instance %s: its free ports are not operational (%s)", inst.ID, joinComma(down))
	}
	return 0, errorf(CodeAddressInUse, "instance %s has no free port (all %d are attached)", inst.ID, len(inst.Ports))
}

func (s *Service) portErr(spec string) string {
	if op, ok := s.ports[spec]; ok && op.err != nil {
		return ": " + op.err.Error()
	}
	return ""
}

// deleteENI stages the deletion of e and the disassociation of its public
// IPs.
func (s *Service) deleteENI(tx *txn, e *ENI) error {
	for _, ip := range e.PrivateIPs {
		if id := tx.eipByPrivate(ip); id != "" {
			a := tx.eip(id).Clone()
			a.ENIID, a.PrivateIP = "", netip.Addr{}
			tx.putEIP(a)
		}
	}
	tx.delENI(e.ID)
	return nil
}
