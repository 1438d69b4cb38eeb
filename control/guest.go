package control

import (
	"net"
	"strings"

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

// configureGuestsLocked is configureGuestsTxLocked on the committed state.
func (s *Service) configureGuestsLocked(ids map[string]bool) {
	s.configureGuestsTxLocked(s.st.txn(Root), ids)
}

// configureGuestsTxLocked gives the guest side of every tap: port that a
// record in ids is attached to (as tx sees the records: the committed state
// with tx's changes) the record's MAC and its subnet's MTU, as a cloud does
// when it attaches an interface: the MAC moves with the record. commitLocked
// calls it before it publishes tx, because the data path addresses the
// frames it delivers on a tap: port to the record's MAC: a guest device
// that got the MAC only after the publication would drop the first frames
// of an attach or a reassign as meant for another host. Failures are
// logged, not fatal.
func (s *Service) configureGuestsTxLocked(tx *txn, ids map[string]bool) {
	for id := range ids {
		e := tx.eni(id)
		if e == nil {
			continue
		}
		mac, err := net.ParseMAC(e.MAC)
		if err != nil {
			continue
		}
		mtu := 0
		if sn := tx.subnet(e.SubnetID); sn != nil {
			mtu = sn.MTU
		}
		for _, a := range e.Attachments {
			inst := tx.instance(a.InstanceID)
			if inst == nil {
				continue
			}
			for _, p := range inst.Ports {
				if p.DeviceIndex != a.DeviceIndex || !strings.HasPrefix(p.Spec, KindTap+":") {
					continue
				}
				op := s.ports[p.Spec]
				if op == nil || op.port == nil {
					continue
				}
				gl, ok := unwrapPort(op.port).(guestLink)
				if !ok {
					continue
				}
				if err := gl.SetMAC(mac); err != nil {
					s.log.Warn("set guest MAC", "port", p.Spec, "record", id, "err", err)
				}
				if mtu > 0 {
					if err := gl.SetMTU(mtu); err != nil {
						s.log.Warn("set guest MTU", "port", p.Spec, "record", id, "err", err)
					}
				}
			}
		}
	}
}
