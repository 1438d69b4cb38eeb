package control

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
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

// defaultHotplugTimeout bounds each QMP conversation, the guest's release
// of an unplugged device included (Service.hotplugTimeout).
const defaultHotplugTimeout = 10 * time.Second

func hotplugID(idx int) string { return fmt.Sprintf("roam%d", idx) }

func hotplugSpec(inst *Instance, idx int) string {
	return tap.Spec{Kind: tap.KindStream, Path: filepath.Join(filepath.Dir(inst.QMP), fmt.Sprintf("roam-%s-%d.sock", inst.ID, idx))}.String()
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

// plug stages, at device index idx of inst (a free slot, or the next
// index, which becomes a new slot), the opening of the slot's stream port
// and the hot-plug of a NIC with e's MAC on it: host effects that run after
// the commit and before e's new binding is published.
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
	id, mon, instID, eniID, mac := hotplugID(idx), inst.QMP, inst.ID, e.ID, e.MAC
	sock := streamPath(spec)
	timeout := s.hotplugTimeout
	do := func() error {
		if _, err := s.openPort(spec); err != nil {
			return &Error{Code: CodeIncorrectState, Message: fmt.Sprintf("instance %s: hot-plug port %s: %v", instID, spec, err), Cause: err}
		}
		start := time.Now()
		if err := qmp.PlugNIC(mon, id, sock, mac, timeout); err != nil {
			if refusedByQEMU(err) {
				s.closePort(spec)
				return &Error{Code: CodeIncorrectState, Message: fmt.Sprintf("instance %s: hot-plug of a NIC for %s through QMP %s: %v", instID, eniID, mon, err), Cause: err}
			}
			return fmt.Errorf("QMP %s: %w", mon, err)
		}
		s.log.Info("hot-plugged a NIC", "instance", instID, "device_index", idx, "record", eniID, "mac", mac, "port", spec, "took", time.Since(start))
		return nil
	}
	tx.pre = append(tx.pre, hostEffect{
		key: instID, what: fmt.Sprintf("hot-plug of a NIC for %s into %s", eniID, instID), do: do,
		retry: func() error {
			// A timed out plug may have left the netdev or the device.
			if err := qmp.UnplugNIC(mon, id, timeout); err != nil && !refusedByQEMU(err) {
				return fmt.Errorf("QMP %s: %w", mon, err)
			}
			return do()
		},
		undo: func() {
			if err := qmp.UnplugNIC(mon, id, timeout); err != nil {
				s.log.Warn("hot-unplug after a failed operation", "instance", instID, "device", id, "err", err)
			}
			s.closePort(spec)
		},
	})
	tx.hold[e.ID] = true
	return idx, nil
}

// refusedByQEMU reports whether err is a definite answer: QEMU refused the
// command, or no monitor listens on the socket (the VM is not running).
func refusedByQEMU(err error) bool {
	var qe *qmp.Error
	if errors.As(err, &qe) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// unplugFreed is called once an operation has staged the removal of an
// attachment from (instance, idx). When that is a hot-plug slot, the NIC is
// removed from the VM and the port closed after the publication (the data
// path no longer sends to it by then), and trailing free slots are dropped
// from the instance.
func (s *Service) unplugFreed(tx *txn, instID string, idx int) {
	inst := tx.instance(instID)
	if inst == nil || inst.QMP == "" || idx >= len(inst.Ports) || !inst.Ports[idx].Hotplug {
		return
	}
	spec, mon, id, timeout := inst.Ports[idx].Spec, inst.QMP, hotplugID(idx), s.hotplugTimeout
	tx.post = append(tx.post, hostEffect{key: instID, what: "hot-unplug of " + id + " from " + instID, do: func() error {
		start := time.Now()
		err := qmp.UnplugNIC(mon, id, timeout)
		if err != nil {
			s.log.Warn("hot-unplug", "instance", instID, "device", id, "err", err)
		} else {
			s.log.Info("hot-unplugged a NIC", "instance", instID, "device_index", idx, "took", time.Since(start))
		}
		s.closePort(spec)
		return err
	}})
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
	if !ok || op.port == nil || !specIs(spec, tap.Spec.IsStream) {
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

// replugAfterRestart replaces, on the effects runner, the NIC of every
// hot-plug slot that has a record attached. QEMU 7.2's stream netdev does
// not reconnect, so a NIC that was connected to the previous roamd's socket
// carries nothing until it is replaced: device_del, netdev_del, then
// netdev_add on the new listening socket and device_add with the same MAC.
// The guest sees the NIC go and come back and runs DHCP again. Each slot is
// replaced only while the same record is still attached there (checked
// under s.mu; the QMP conversation runs without it).
func (s *Service) replugAfterRestart() {
	for _, in := range sortedValues(s.st.instances) {
		if in.QMP == "" {
			continue
		}
		for _, p := range in.Ports {
			eni := s.st.slots[slot{in.ID, p.DeviceIndex}]
			if !p.Hotplug || eni == "" {
				continue
			}
			inst, mon, spec, mac, idx := in.ID, in.QMP, p.Spec, s.st.enis[eni].MAC, p.DeviceIndex
			s.fx.enqueue(hostEffect{key: inst, what: "re-plug"}, func() error {
				s.mu.RLock()
				in := s.st.instances[inst]
				still := in != nil && in.QMP == mon && s.st.slots[slot{inst, idx}] == eni && s.portUp(spec) != ""
				s.mu.RUnlock()
				if !still {
					return nil
				}
				id := hotplugID(idx)
				err := qmp.UnplugNIC(mon, id, s.hotplugTimeout)
				if err == nil {
					err = qmp.PlugNIC(mon, id, streamPath(spec), mac, s.hotplugTimeout)
				}
				if err != nil {
					s.log.Warn("re-plug a hot-plugged NIC after restart", "instance", inst, "device", id, "err", err)
				} else {
					s.log.Info("re-plugged a hot-plugged NIC after restart", "instance", inst, "device_index", idx, "record", eni)
				}
				return err
			})
		}
	}
}
