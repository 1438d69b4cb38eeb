package control

import (
	"errors"

	"roam/tap"
)

// PersistDevices turns TUNSETPERSIST on (or off) for every tap: port the
// service holds, the uplink included, and returns how many it changed.
// With it on, closing the ports leaves the devices, and the guests'
// addresses and routes on them, for the next roamd to attach to.
func (s *Service) PersistDevices(on bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	var errs []error
	try := func(spec string, p tap.Port) {
		if sp, err := tap.ParseSpec(spec); p == nil || err != nil || !sp.IsTAP() {
			return
		}
		pp, ok := unwrapPort(p).(tap.Persister)
		if !ok {
			return
		}
		if err := pp.SetPersist(on); err != nil {
			errs = append(errs, err)
			return
		}
		n++
	}
	for spec, op := range s.ports {
		try(spec, op.port)
	}
	if s.uplnk != nil {
		try(s.gw.Uplink, s.uplnk)
	}
	return n, errors.Join(errs...)
}
