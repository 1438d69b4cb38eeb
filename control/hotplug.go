package control

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"roam/internal/qmp"
	"roam/tap"
)

// Hot-plug: an instance that names its QEMU monitor (Instance.QMP) gets a
// NIC per record attached to it, added to the running VM and removed again
// over QMP, as a cloud hot-attaches an interface:
//
//	attach (no free static port)    roam listens on a new stream socket (the slot's port),
//	                                then QMP netdev_add stream (QEMU connects) + device_add
//	                                virtio-net-pci with the record's MAC; then commit and publish
//	detach, or reassign away        commit and publish, then QMP device_del, wait for
//	                                DEVICE_DELETED (the guest releases the device), netdev_del,
//	                                close the port
//
// A slot is a port of the instance with Hotplug set; its NIC is in the VM
// exactly while a record is attached to it. Slots are appended at the next
// device index and free ones are reused; trailing free slots are removed.
// The slot's socket is roam-NAME-INDEX.sock in the monitor's directory and
// its QEMU ids (netdev and device) are roamINDEX.

// hotplugTimeout bounds each QMP conversation, the guest's release of an
// unplugged device included.
const hotplugTimeout = 10 * time.Second

func hotplugID(idx int) string { return fmt.Sprintf("roam%d", idx) }

func hotplugSpec(inst *Instance, idx int) string {
	return KindStream + ":" + filepath.Join(filepath.Dir(inst.QMP), fmt.Sprintf("roam-%s-%d.sock", inst.ID, idx))
}

// pickOrPlug returns the device index at which e attaches to inst. Without a
// monitor it is pickIndex. With one, a device index that names a hot-plug
// slot (or the next index) plugs a NIC there; no device index takes the
// lowest free static port that is up, else plugs a NIC at the lowest free
// slot or a new one.
func (s *Service) pickOrPlug(tx *txn, inst *Instance, want *int, e *ENI) (int, error) {
	if inst.QMP == "" {
		return s.pickIndex(tx, inst, want)
	}
	free := func(i int) bool { id, _ := tx.slotOwner(inst.ID, i); return id == "" }
	if want != nil {
		i := *want
		switch {
		case i == len(inst.Ports) && i < MaxPorts:
			return s.plug(tx, inst, i, e)
		case i >= 0 && i < len(inst.Ports) && inst.Ports[i].Hotplug && free(i):
			return s.plug(tx, inst, i, e)
		}
		return s.pickIndex(tx, inst, want)
	}
	for _, pt := range inst.Ports {
		if !pt.Hotplug && free(pt.DeviceIndex) && s.operational(pt.Spec) {
			return pt.DeviceIndex, nil
		}
	}
	for _, pt := range inst.Ports {
		if pt.Hotplug && free(pt.DeviceIndex) {
			return s.plug(tx, inst, pt.DeviceIndex, e)
		}
	}
	if len(inst.Ports) >= MaxPorts {
		return 0, errorf(CodeAddressLimit, "instance %s has no free port and already %d ports", inst.ID, MaxPorts)
	}
	return s.plug(tx, inst, len(inst.Ports), e)
}

// plug opens the slot's stream port and hot-plugs a NIC with e's MAC on it
// at device index idx (a free slot, or the next index, which becomes a new
// slot). Both are undone when the operation fails later.
func (s *Service) plug(tx *txn, inst *Instance, idx int, e *ENI) (int, error) {
	spec := hotplugSpec(inst, idx)
	if idx == len(inst.Ports) {
		if o := tx.specOwner(spec); o != "" {
			return 0, errorf(CodeAddressInUse, "instance %s: hot-plug port %s is already a port of instance %s", inst.ID, spec, o)
		}
		c := tx.instance(inst.ID).Clone()
		c.Ports = append(c.Ports, Port{DeviceIndex: idx, Spec: spec, Hotplug: true})
		tx.putInstance(c)
	} else {
		spec = inst.Ports[idx].Spec
	}
	if _, err := s.openPortLocked(spec); err != nil {
		delete(s.ports, spec)
		return 0, &Error{Code: CodeIncorrectState, Message: fmt.Sprintf("instance %s: hot-plug port %s: %v", inst.ID, spec, err), Cause: err}
	}
	tx.undo = append(tx.undo, func() { s.closePortLocked(spec) })
	id, mon := hotplugID(idx), inst.QMP
	if err := qmp.PlugNIC(mon, id, strings.TrimPrefix(spec, KindStream+":"), e.MAC, hotplugTimeout); err != nil {
		return 0, &Error{Code: CodeIncorrectState, Message: fmt.Sprintf("instance %s: hot-plug of a NIC for %s through QMP %s: %v", inst.ID, e.ID, mon, err), Cause: err}
	}
	tx.undo = append(tx.undo, func() {
		if err := qmp.UnplugNIC(mon, id, hotplugTimeout); err != nil {
			s.log.Warn("hot-unplug after a failed operation", "instance", inst.ID, "device", id, "err", err)
		}
	})
	s.log.Info("hot-plugged a NIC", "instance", inst.ID, "device_index", idx, "record", e.ID, "mac", e.MAC, "port", spec)
	return idx, nil
}

// unplugFreed is called once an operation has staged the removal of an
// attachment from (instance, idx). When that is a hot-plug slot, the NIC is
// removed from the VM and the port closed after the commit (the data path
// no longer sends to it by then), and trailing free slots are dropped from
// the instance.
func (s *Service) unplugFreed(tx *txn, instID string, idx int) {
	inst := tx.instance(instID)
	if inst == nil || inst.QMP == "" || idx >= len(inst.Ports) || !inst.Ports[idx].Hotplug {
		return
	}
	spec, mon, id := inst.Ports[idx].Spec, inst.QMP, hotplugID(idx)
	tx.after = append(tx.after, func() {
		start := time.Now()
		if err := qmp.UnplugNIC(mon, id, hotplugTimeout); err != nil {
			s.log.Warn("hot-unplug", "instance", instID, "device", id, "err", err)
		} else {
			s.log.Info("hot-unplugged a NIC", "instance", instID, "device_index", idx, "took", time.Since(start))
		}
		s.closePortLocked(spec)
	})
	c := inst.Clone()
	for n := len(c.Ports); n > 0; n-- {
		last := c.Ports[n-1]
		if owner, _ := tx.slotOwner(instID, last.DeviceIndex); !last.Hotplug || owner != "" {
			break
		}
		c.Ports = c.Ports[:n-1]
	}
	if len(c.Ports) != len(inst.Ports) {
		tx.putInstance(c)
	}
}

// streamGone reports whether spec is a stream port whose QEMU was
// connected and is gone (the VM stopped or was killed): attaching to it is
// still allowed (QEMU may be restarted), but instance views show it down.
func (s *Service) streamGone(spec string) bool {
	op, ok := s.ports[spec]
	if !ok || op.port == nil || !strings.HasPrefix(spec, KindStream+":") {
		return false
	}
	p := unwrapPort(op.port)
	o, ok1 := p.(tap.Operationaler)
	st, ok2 := p.(tap.Stater)
	if !ok1 || !ok2 || o.Operational() {
		return false
	}
	x := st.Stats()
	return x.RxFrames > 0 || x.Reconnects > 0
}

func validQMP(path string) error {
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return invalid("qmp", path, "the monitor's socket path must be absolute and clean")
	}
	if len(path) > 107 {
		return invalid("qmp", path, "a unix socket path has at most 107 bytes")
	}
	return nil
}

// replugAfterRestart replaces, in the background, the NIC of every hot-plug
// slot that has a record attached. QEMU 7.2's stream netdev does not
// reconnect, so a NIC that was connected to the previous roamd's socket
// carries nothing until it is replaced: device_del, netdev_del, then
// netdev_add on the new listening socket and device_add with the same MAC.
// The guest sees the NIC go and come back and runs DHCP again. Each slot is
// done under s.mu, and only while the same record is still attached there.
func (s *Service) replugAfterRestart() {
	type job struct {
		inst, mon, spec, eni, mac string
		idx                       int
	}
	var jobs []job
	for _, in := range sortedValues(s.st.instances) {
		if in.QMP == "" {
			continue
		}
		for _, p := range in.Ports {
			id := s.st.slots[slot{in.ID, p.DeviceIndex}]
			if !p.Hotplug || id == "" {
				continue
			}
			jobs = append(jobs, job{in.ID, in.QMP, p.Spec, id, s.st.enis[id].MAC, p.DeviceIndex})
		}
	}
	if len(jobs) == 0 {
		return
	}
	go func() {
		for _, j := range jobs {
			s.mu.Lock()
			in := s.st.instances[j.inst]
			if in != nil && in.QMP == j.mon && s.st.slots[slot{j.inst, j.idx}] == j.eni && s.ports[j.spec] != nil && s.ports[j.spec].port != nil {
				id := hotplugID(j.idx)
				err := qmp.UnplugNIC(j.mon, id, hotplugTimeout)
				if err == nil {
					err = qmp.PlugNIC(j.mon, id, strings.TrimPrefix(j.spec, KindStream+":"), j.mac, hotplugTimeout)
				}
				if err != nil {
					s.log.Warn("re-plug a hot-plugged NIC after restart", "instance", j.inst, "device", id, "err", err)
				} else {
					s.log.Info("re-plugged a hot-plugged NIC after restart", "instance", j.inst, "device_index", j.idx, "record", j.eni)
				}
			}
			s.mu.Unlock()
		}
	}()
}
