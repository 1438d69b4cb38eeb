package control

import (
	"fmt"
	"strconv"
	"strings"
)

// Inspector reads the data path's tables and counters for the API. The
// daemon adapts the switch to it; nil means the data path offers none.
type Inspector interface {
	Flows(eniID string) []Flow
	FlushFlows(eniID string) int
	Stats(eniID string) Stats
}

// Dump returns the whole committed state, every list by id, with the
// problems Check finds.
func (s *Service) Dump() *Dump { return s.As(Root).Dump() }

// FlushFlows removes conntrack entries of one record (root or its owners)
// or of all records (root). It is audited but changes no stored state.
func (s *Service) FlushFlows(p Principal, eniID string, insp Inspector) (*FlushResult, error) {
	return update(s, p, "FlushConntrack", func(tx *txn) (func() *FlushResult, error) {
		tx.target = eniID
		if eniID == "" {
			if err := requireRoot(p, "flush all of conntrack"); err != nil {
				return nil, err
			}
		} else if _, err := s.eniFor(tx, eniID, PermOwner); err != nil {
			return nil, err
		}
		n := insp.FlushFlows(eniID)
		id := eniID
		if id == "" {
			id = "all"
		}
		ev := &Event{Time: s.now().UTC(), UID: p.UID, Operation: "FlushConntrack", Target: id, Result: "ok", Message: fmt.Sprintf("%d flows", n)}
		if err := s.store.AppendEvent(ev); err != nil {
			s.log.Error("audit log append failed", "err", err)
		}
		return func() *FlushResult { return &FlushResult{ID: id, Flushed: n} }, nil
	})
}

// AuthorizeCapture refuses a capture to anyone but root.
func (s *Service) AuthorizeCapture(p Principal) error { return requireRoot(p, "capture frames") }

// ResolvePort maps a capture target to a port spec: a spec, an instance
// port as NAME/INDEX, a record id (its first attachment's port), or
// "uplink".
func (s *Service) ResolvePort(ref string) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ref == "" {
		return "", invalid("port", ref, "give a port spec, INSTANCE/INDEX, a record id or uplink")
	}
	if ref == "uplink" {
		if s.gw.Uplink == "" {
			return "", errorf(CodeNotFound, "port %q: roamd runs without --uplink", ref)
		}
		return s.gw.Uplink, nil
	}
	if e := s.st.enis[ref]; e != nil {
		if len(e.Attachments) == 0 {
			return "", errorf(CodeIncorrectState, "port %q: record is not attached", ref)
		}
		a := e.Attachments[0]
		return s.st.instances[a.InstanceID].Ports[a.DeviceIndex].Spec, nil
	}
	if name, idx, ok := strings.Cut(ref, "/"); ok && !strings.Contains(name, ":") {
		in := s.st.instances[name]
		i, err := strconv.Atoi(idx)
		if in == nil || err != nil || i < 0 || i >= len(in.Ports) {
			return "", notFound("port", ref)
		}
		return in.Ports[i].Spec, nil
	}
	if _, ok := s.ports[ref]; ok || ref == s.gw.Uplink {
		return ref, nil
	}
	return "", notFound("port", ref)
}
