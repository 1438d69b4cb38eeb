package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"roam/tap"
)

// FlowsFile is the file in the state directory where a graceful restart
// leaves the conntrack snapshot for the next roamd.
const FlowsFile = "flows.snap"

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

// Handover stops roamd for a graceful restart or upgrade, keeping every
// flow: it stops serving the API, makes the TAP devices persistent, stops
// the data path, writes the conntrack table (flows, NAT bindings, PAT
// ports on hold) to FlowsFile in the state directory, and closes the rest.
// The next roamd on the same state directory reattaches to the devices and
// imports the flows before it reads a frame (see StartDaemon).
func (d *Daemon) Handover(ctx context.Context) error {
	first := d.stopServing(ctx)
	kept, err := d.Service.PersistDevices(true)
	if err != nil {
		d.log.Warn("some devices could not be made persistent: their guests lose their addresses", "err", err)
	}
	// The ports go first (persistent: their devices stay), then the
	// readers are waited for: nothing changes the table after that.
	d.Service.Close()
	d.Switch.Close()
	stopped := time.Now()
	n, err := d.writeFlows()
	if err != nil {
		d.log.Error("flow snapshot not written: the next roamd starts with an empty table", "err", err)
		if first == nil {
			first = err
		}
	}
	if err := d.store.Close(); err != nil && first == nil {
		first = err
	}
	d.log.Info("roamd stopped for a restart; flows kept", "flows", n, "devices_kept", kept,
		"data_path_stopped_at", stopped.UTC().Format(time.RFC3339Nano))
	return first
}

// writeFlows writes the switch's flows to FlowsFile atomically (a temporary
// file, fsync, rename).
func (d *Daemon) writeFlows() (int, error) {
	path := filepath.Join(d.cfg.StateDir, FlowsFile)
	f, err := os.CreateTemp(d.cfg.StateDir, FlowsFile+".tmp*")
	if err != nil {
		return 0, err
	}
	n, err := d.Switch.ExportFlows(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return 0, fmt.Errorf("flow snapshot %s: %w", path, err)
	}
	return n, nil
}

// restoreFlows imports FlowsFile, if a graceful restart left one, and
// removes it (a snapshot is used once: after a crash, flows it held are
// stale). A corrupt snapshot is refused with an error in the log and roamd
// starts with an empty table. It then clears the persistence of the
// devices the previous roamd kept: from now on they go when roamd closes
// them, as always.
func (d *Daemon) restoreFlows() {
	path := filepath.Join(d.cfg.StateDir, FlowsFile)
	defer func() {
		if _, err := d.Service.PersistDevices(false); err != nil {
			d.log.Warn("clear device persistence", "err", err)
		}
	}()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		d.log.Error("flow snapshot unreadable; starting with an empty conntrack table", "path", path, "err", err)
		return
	}
	st, _ := f.Stat()
	n, err := d.Switch.ImportFlows(f)
	f.Close()
	os.Remove(path)
	if err != nil {
		d.log.Error("flow snapshot refused; starting with an empty conntrack table", "path", path, "err", err)
		return
	}
	attrs := []any{"flows", n, "path", path}
	if st != nil {
		attrs = append(attrs, "stopped_for", time.Since(st.ModTime()).String())
	}
	d.log.Info("flows restored from the previous roamd", attrs...)
}
