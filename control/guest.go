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

// configureGuestsLocked gives the guest side of every tap: port that a
// record in ids is attached to the record's MAC and its subnet's MTU, as a
// cloud does when it attaches an interface: the MAC moves with the record.
// Failures are logged, not fatal: the data path carries the record either
// way (it addresses frames to the MAC it learns on the port).
func (s *Service) configureGuestsLocked(ids map[string]bool) {
	for id := range ids {
		e := s.st.enis[id]
		if e == nil {
			continue
		}
		mac, err := net.ParseMAC(e.MAC)
		if err != nil {
			continue
		}
		mtu := 0
		if sn := s.st.subnets[e.SubnetID]; sn != nil {
			mtu = sn.MTU
		}
		for _, a := range e.Attachments {
			inst := s.st.instances[a.InstanceID]
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
