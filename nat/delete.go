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
	n := 0
	var refs []uint32
	for i := range t.shards {
		s := &t.shards[i]
		refs = refs[:0]
		s.mu.Lock()
		for idx := uint32(1); idx < s.next; idx++ {
			ref := s.id<<refShardShift | idx
			if f := s.flow(ref); f.expires != 0 {
				r := f.record()
				if pred(&r) {
					refs = append(refs, ref)
				}
			}
		}
		s.mu.Unlock()
		for _, ref := range refs {
			s.mu.Lock()
			f := s.flow(ref)
			if f.expires == 0 {
				s.mu.Unlock()
				continue
			}
			tu := f.t
			hr := tu[Reply].hash(t.seed)
			z := t.shardOf(hr)
			s.mu.Unlock()
			lockPair(s, z)
			r := f.record()
			ok := f.expires != 0 && f.t == tu && pred(&r)
			if ok {
				t.deleteLocked(s, z, ref, tu[Orig].hash(t.seed), hr)
				t.Counters.Deleted.Add(1)
				n++
			}
			unlockPair(s, z)
			if ok && removed != nil {
				removed(&r)
			}
		}
	}
	return n
}
