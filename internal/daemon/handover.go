package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// FlowsFile is the file in the state directory where a graceful restart
// leaves the conntrack snapshot for the next roamd.
const FlowsFile = "flows.snap"

// Handover stops roamd for a graceful restart or upgrade, keeping every
// flow: it stops serving the API, makes the TAP devices persistent, stops
// the data path, writes the conntrack table (flows, NAT bindings, PAT
// ports on hold) to FlowsFile and the records' counters to CountersFile in
// the state directory, and closes the rest.
// The next roamd on the same state directory reattaches to the devices and
// imports the flows before it reads a frame (see Start).
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
	nc, err := d.writeCounters()
	if err != nil {
		d.log.Error("counter snapshot not written: the records' counters start over", "err", err)
		if first == nil {
			first = err
		}
	}
	if err := d.store.Close(); err != nil && first == nil {
		first = err
	}
	d.log.Info("roamd stopped for a restart; flows kept", "flows", n, "devices_kept", kept, "record_counters", nc,
		"data_path_stopped_at", stopped.UTC().Format(time.RFC3339Nano))
	return first
}

// writeFlows writes the switch's flows to FlowsFile atomically.
func (d *Daemon) writeFlows() (int, error) {
	var n int
	err := d.writeStateFile(FlowsFile, func(w io.Writer) (err error) {
		n, err = d.Switch.ExportFlows(w)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("flow snapshot: %w", err)
	}
	return n, nil
}

// writeStateFile writes the file name of the state directory atomically
// (a temporary file, fsync, rename) with what write writes.
func (d *Daemon) writeStateFile(name string, write func(io.Writer) error) error {
	path := filepath.Join(d.cfg.StateDir, name)
	f, err := os.CreateTemp(d.cfg.StateDir, name+".tmp*")
	if err != nil {
		return err
	}
	err = write(f)
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
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
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
