package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	vswitch "roam/switch"
)

// CountersFile is the file in the state directory where a graceful
// restart leaves the per-record counters (packets, bytes, drops by reason)
// for the next roamd, next to FlowsFile. It is the daemon's own file, JSON:
//
//	{"version": 1, "records": {"eni-…": {"packets_in": …, "drops": {…}}, …}}
const CountersFile = "counters.snap"

const countersVersion = 1

type counterSnapshot struct {
	Version int                         `json:"version"`
	Records map[string]vswitch.Counters `json:"records"`
}

// writeCounters writes every record's counters to CountersFile atomically.
// The data path is stopped: nothing counts any more.
func (d *Daemon) writeCounters() (int, error) {
	snap := counterSnapshot{Version: countersVersion, Records: map[string]vswitch.Counters{}}
	for _, id := range d.Service.Census().ENIs {
		snap.Records[id] = d.Switch.RecordCounters(id)
	}
	err := d.writeStateFile(CountersFile, func(w io.Writer) error { return json.NewEncoder(w).Encode(snap) })
	if err != nil {
		return 0, fmt.Errorf("counter snapshot: %w", err)
	}
	return len(snap.Records), nil
}

// restoreCounters adds the counters a graceful restart left in
// CountersFile to the records that still exist, and removes the file (it
// is used once, like FlowsFile). An unreadable or corrupt file is logged
// and the counters start over. Start calls it before the switch reads a
// frame.
func (d *Daemon) restoreCounters() {
	path := filepath.Join(d.cfg.StateDir, CountersFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	os.Remove(path)
	var snap counterSnapshot
	if err == nil {
		err = json.Unmarshal(b, &snap)
	}
	if err == nil && snap.Version != countersVersion {
		err = fmt.Errorf("version %d, want %d", snap.Version, countersVersion)
	}
	if err != nil {
		d.log.Error("counter snapshot refused; the records' counters start over", "path", path, "err", err)
		return
	}
	live := map[string]bool{}
	for _, id := range d.Service.Census().ENIs {
		live[id] = true
	}
	n := 0
	for id, c := range snap.Records {
		if !live[id] {
			continue // deleted since: nothing to count for
		}
		unknown, err := d.Switch.RestoreRecordCounters(id, c)
		if err != nil {
			d.log.Warn("record counters not restored", "eni", id, "err", err)
			continue
		}
		if len(unknown) > 0 {
			d.log.Warn("drop reasons this roamd does not know were not restored", "eni", id, "reasons", unknown)
		}
		n++
	}
	d.log.Info("record counters restored from the previous roamd", "records", n, "path", path)
}
