package tap

// softGSO is the scratch space a driver whose far side cannot take offloads
// uses to segment super-frames (Segment) before writing them. It is allocated
// once per port and reused for every super-frame.
type softGSO struct {
	arena []byte
	out   []Frame
}

const (
	softArena  = 256 << 10
	softMaxSeg = 1024
	maxHdrs    = ethHdrLen + 4 + 60 + 60 // Ethernet+VLAN, IPv4 with options, TCP with options
)

// segment cuts f into segments held in s and returns them, or nil when f is
// malformed or would need more than the scratch space. The segments are valid
// until the next call.
func (s *softGSO) segment(f *Frame) []Frame {
	size := int(f.GSO.Size)
	if size == 0 {
		return nil
	}
	per := min(f.Len, maxHdrs+size)
	n := f.Len/size + 1
	if n > softMaxSeg || n*per > softArena {
		return nil
	}
	if s.arena == nil {
		s.arena = make([]byte, softArena)
		s.out = make([]Frame, softMaxSeg)
	}
	for i := 0; i < n; i++ {
		s.out[i] = Frame{Buf: s.arena[i*per : (i+1)*per : (i+1)*per]}
	}
	k := Segment(f, s.out[:n])
	if k == 0 {
		return nil
	}
	return s.out[:k]
}
