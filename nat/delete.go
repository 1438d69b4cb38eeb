package nat

// record returns f as a FlowRecord.
func (f *flow) record() FlowRecord {
	return FlowRecord{Orig: f.t[Orig], Reply: f.t[Reply], Expires: f.expires, Owner: f.owner,
		State: f.state, Flags: f.flags, WScale: f.wscale, End: f.end, MaxWin: f.maxwin}
}

// DeleteFunc removes every live flow for which pred is true, releasing its
// PAT mapping and owner charge as Flush does, calls removed (when not nil)
// with each removed flow after it is gone, and returns how many it
// removed. pred is called with a shard lock held: it must be quick and
// must not call the table. The control plane uses it to apply a record's
// flow policy when its security groups or public IPs change.
func (t *Table) DeleteFunc(pred func(r *FlowRecord) bool, removed func(r *FlowRecord)) int {
	var r FlowRecord
	match := func(f *flow) bool {
		r = f.record()
		return pred(&r)
	}
	var gone func(*flow)
	if removed != nil {
		gone = func(*flow) { removed(&r) } // r: the record match made under the same locks
	}
	return t.deleteWhere(match, gone)
}
