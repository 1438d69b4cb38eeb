package control

import (
	"net"
	"slices"
	"sort"

	"roam/tap"
)

// guestLink is what a tap: port's driver offers to configure its guest
// side (the kernel side of a TAP device that roam owns).
type guestLink interface {
	SetMAC(mac []byte) error
	SetMTU(mtu int) error
}

// unwrapPort returns the driver behind wrappers such as capture's.
func unwrapPort(p tap.Port) tap.Port {
	for {
		u, ok := p.(interface{ Unwrap() tap.Port })
		if !ok {
			return p
		}
		p = u.Unwrap()
	}
}

// configureGuestsLocked gives the guest side of every tap: port that a
// record in ids is attached to the record's MAC and its subnet's MTU, as a
// cloud does when it attaches an interface: the MAC moves with the record.
// Open calls it for every record before it serves; operations stage the
// same as host effects (holdForEffects). Failures are logged, not fatal.
func (s *Service) configureGuestsLocked(ids map[string]bool) {
	tx := s.st.view()
	for id := range ids {
		e := tx.eni(id)
		if e == nil {
			continue
		}
		for _, a := range e.Attachments {
			if spec := tapSpecAt(tx, a); spec != "" {
				s.configureGuest(s.guestLinkLocked(spec), spec, e.MAC, subnetMTU(tx, e), id)
			}
		}
	}
}

func subnetMTU(tx *txn, e *ENI) int {
	if sn := tx.subnet(e.SubnetID); sn != nil {
		return sn.MTU
	}
	return 0
}

// tapSpecAt returns the spec of the tap: port attachment a binds, or "".
func tapSpecAt(tx *txn, a Attachment) string {
	inst := tx.instance(a.InstanceID)
	if inst == nil || a.DeviceIndex >= len(inst.Ports) {
		return ""
	}
	if spec := inst.Ports[a.DeviceIndex].Spec; specIs(spec, tap.Spec.IsTAP) {
		return spec
	}
	return ""
}

// guestLinkLocked returns the guest side of the open port spec, or nil.
func (s *Service) guestLinkLocked(spec string) guestLink {
	op := s.ports[spec]
	if op == nil || op.port == nil {
		return nil
	}
	gl, _ := unwrapPort(op.port).(guestLink)
	return gl
}

func (s *Service) configureGuest(gl guestLink, spec, macStr string, mtu int, id string) {
	mac, err := net.ParseMAC(macStr)
	if gl == nil || err != nil {
		return
	}
	if err := gl.SetMAC(mac); err != nil {
		s.log.Warn("set guest MAC", "port", spec, "record", id, "err", err)
	}
	if mtu > 0 {
		if err := gl.SetMTU(mtu); err != nil {
			s.log.Warn("set guest MTU", "port", spec, "record", id, "err", err)
		}
	}
}

// guestMACer is an optional interface of a guestLink that reports the
// guest side's current MAC, so that a refused operation restores it.
type guestMACer interface {
	GuestMAC() (net.HardwareAddr, error)
}

// holdForEffects stages, for every record of tx that gets a new
// attachment to a tap: port, its MAC and its subnet's MTU on the guest
// side as a pre effect: the data path addresses the frames it delivers on
// that port to the record's MAC, so a guest device that got the MAC only
// after the publication would drop the first frames of an attach or a
// reassign as meant for another host. The record keeps its previous
// binding until then. A refused operation gives the guest its previous
// MAC back (the one it reported, else the MAC of the record that was
// attached there). Called by commitLocked before the publication, with
// tx.st still the state before tx.
func (s *Service) holdForEffects(tx *txn) {
	if tx.noEffects {
		return
	}
	ids := make([]string, 0, len(tx.dirty))
	for id := range tx.dirty {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		e := tx.eni(id)
		if e == nil {
			continue
		}
		old := tx.st.enis[id]
		for _, a := range e.Attachments {
			if old != nil && slices.ContainsFunc(old.Attachments, func(o Attachment) bool {
				return o.InstanceID == a.InstanceID && o.DeviceIndex == a.DeviceIndex
			}) {
				continue
			}
			spec := tapSpecAt(tx, a)
			if spec == "" || s.guestLinkLocked(spec) == nil {
				continue
			}
			var prev net.HardwareAddr
			if o := tx.st.enis[tx.st.slots[slot{a.InstanceID, a.DeviceIndex}]]; o != nil && o.ID != id {
				prev, _ = net.ParseMAC(o.MAC)
			}
			mac, mtu := e.MAC, subnetMTU(tx, e)
			tx.pre = append(tx.pre, hostEffect{key: a.InstanceID, what: "guest MAC of " + spec,
				do: func() error {
					s.mu.RLock()
					gl := s.guestLinkLocked(spec)
					s.mu.RUnlock()
					if gm, ok := gl.(guestMACer); ok {
						if m, err := gm.GuestMAC(); err == nil {
							prev = m
						}
					}
					s.configureGuest(gl, spec, mac, mtu, id)
					return nil
				},
				undo: func() {
					s.mu.RLock()
					gl := s.guestLinkLocked(spec)
					s.mu.RUnlock()
					if gl != nil && prev != nil {
						if err := gl.SetMAC(prev); err != nil {
							s.log.Warn("restore guest MAC", "port", spec, "err", err)
						}
					}
				}})
			tx.hold[id] = true
		}
	}
	if len(tx.pre)+len(tx.post) > 0 {
		tx.prev = tx.back()
	}
}
