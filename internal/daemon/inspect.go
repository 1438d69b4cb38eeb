package daemon

import (
	"roam/api"
	"roam/control"
	vswitch "roam/switch"
)

// SwitchInspector adapts a *vswitch.Switch to control.Inspector.
type SwitchInspector struct{ Switch *vswitch.Switch }

// Flows implements control.Inspector.
func (si SwitchInspector) Flows(eniID string) []api.Flow {
	fs := si.Switch.Flows(eniID)
	out := make([]api.Flow, 0, len(fs))
	for _, f := range fs {
		out = append(out, api.Flow{
			Proto: f.Proto, OrigSrc: f.Src.String(), OrigDst: f.Dst.String(),
			ReplySrc: f.ReplySrc.String(), ReplyDst: f.ReplyDst.String(),
			State: f.State, ENIID: f.Record, Expires: f.Expires.UTC(),
		})
	}
	return out
}

// FlushFlows implements control.Inspector.
func (si SwitchInspector) FlushFlows(eniID string) int { return si.Switch.FlushFlows(eniID) }

// Stats implements control.Inspector.
func (si SwitchInspector) Stats(eniID string) api.Stats {
	var c vswitch.Counters
	id := eniID
	if eniID == "" {
		c = si.Switch.Counters()
		id = "global"
	} else {
		c = si.Switch.RecordCounters(eniID)
	}
	if c.Drops == nil {
		c.Drops = map[string]uint64{}
	}
	return api.Stats{
		ID: id, PacketsIn: c.PacketsIn, PacketsOut: c.PacketsOut, BytesIn: c.BytesIn, BytesOut: c.BytesOut,
		Packets: c.Packets, Forwarded: c.Forwarded, Flows: uint64(c.Flows), FlowLimit: uint64(c.FlowLimit),
		Translations: c.Translated, Drops: c.Drops, ICMPErrorsSent: c.ICMPSent, ICMPErrorsLimited: c.ICMPLimited,
	}
}

// The switch takes the fast path: a reassign rebuilds one record there.
var (
	_ control.DataPath     = (*vswitch.Switch)(nil)
	_ control.DeltaApplier = (*vswitch.Switch)(nil)
)
