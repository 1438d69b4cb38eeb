package tap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// fakeQEMU is the peer side of a stream port, as QEMU's -netdev stream.
type fakeQEMU struct {
	t *testing.T
	c net.Conn
}

func dialQEMU(t *testing.T, path string) *fakeQEMU {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return &fakeQEMU{t: t, c: c}
}

func (q *fakeQEMU) send(frames ...[]byte) {
	q.t.Helper()
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	if _, err := q.c.Write(b); err != nil {
		q.t.Fatalf("peer write: %v", err)
	}
}

func (q *fakeQEMU) recv() []byte {
	q.t.Helper()
	q.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var l [4]byte
	if _, err := io.ReadFull(q.c, l[:]); err != nil {
		q.t.Fatalf("peer read length: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(l[:]))
	if _, err := io.ReadFull(q.c, b); err != nil {
		q.t.Fatalf("peer read frame: %v", err)
	}
	return b
}

func openStream(t *testing.T) (*Stream, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	p, err := Open("stream:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.(*Stream), path
}

// readWithin reads one batch, failing the test after d.
func readWithin(t *testing.T, p Port, frames []Frame, d time.Duration) int {
	t.Helper()
	type res struct {
		n   int
		err error
	}
	c := make(chan res, 1)
	go func() {
		n, err := p.Read(frames)
		c <- res{n, err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("Read: %v", r.err)
		}
		return r.n
	case <-time.After(d):
		t.Fatalf("Read: nothing within %v", d)
	}
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestStreamFraming(t *testing.T) {
	p, path := openStream(t)
	if p.Operational() {
		t.Error("Operational with no peer: got true, want false")
	}
	q := dialQEMU(t, path)
	waitFor(t, "peer", p.Operational)
	f1, _ := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(50)}.build()
	f2, _ := pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(1400)}.build()
	q.send(f1, f2, f1)
	frames := NewFrames(8, Headroom+MaxFrame)
	var got [][]byte
	for len(got) < 3 {
		n := readWithin(t, p, frames, 5*time.Second)
		for i := 0; i < n; i++ {
			if frames[i].GSO != (GSO{}) || frames[i].Off != Headroom {
				t.Errorf("frame %d: got Off %d GSO %+v, want Headroom and no GSO", i, frames[i].Off, frames[i].GSO)
			}
			got = append(got, append([]byte(nil), frames[i].Bytes()...))
		}
	}
	for i, want := range [][]byte{f1, f2, f1} {
		if !bytes.Equal(got[i], want) {
			t.Errorf("frame %d differs", i)
		}
	}
	// Write: plain, partial checksum, and a super-frame the peer gets cut.
	plain := frameOf(f2, GSO{})
	pp := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(99), partial: true}
	pb, pg := pp.build()
	partial := frameOf(pb, pg)
	super := superFrame(pktSpec{proto: protoTCP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(4000)}, GSOTCPv4, 1448)
	if n, err := p.Write([]Frame{plain, partial, super}); n != 3 || err != nil {
		t.Fatalf("Write: got %d, %v; want 3, nil", n, err)
	}
	if b := q.recv(); !bytes.Equal(b, f2) {
		t.Error("plain frame differs")
	}
	if b := q.recv(); checkFrame(b) != nil {
		t.Errorf("partial checksum not completed: %v", checkFrame(b))
	}
	for i := 0; i < 3; i++ {
		b := q.recv()
		if err := checkFrame(b); err != nil || len(b) > 14+20+20+1448 {
			t.Errorf("segment %d: %d bytes, %v", i, len(b), err)
		}
	}
	st := p.Stats()
	if st.RxFrames != 3 || st.TxFrames != 5 || st.RxBytes != uint64(2*len(f1)+len(f2)) {
		t.Errorf("got stats %+v, want 3 frames in (%d bytes) and 5 out", st, 2*len(f1)+len(f2))
	}
}

func TestStreamReconnect(t *testing.T) {
	p, path := openStream(t)
	f, _ := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2, payload: pattern(60)}.build()
	frames := NewFrames(4, Headroom+MaxFrame)

	// Write with no peer drops and counts.
	if n, err := p.Write([]Frame{frameOf(f, GSO{})}); n != 1 || err != nil {
		t.Fatalf("Write without peer: got %d, %v; want 1, nil", n, err)
	}
	if d := p.Stats().Drops[DropNoPeer]; d != 1 {
		t.Errorf("got %d no_peer drops, want 1", d)
	}

	// Read blocks until a peer comes.
	done := make(chan int, 1)
	go func() {
		n, _ := p.Read(frames)
		done <- n
	}()
	select {
	case <-done:
		t.Fatal("Read returned with no peer")
	case <-time.After(100 * time.Millisecond):
	}
	q1 := dialQEMU(t, path)
	q1.send(f)
	select {
	case n := <-done:
		if n != 1 {
			t.Fatalf("got %d frames, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after the peer sent a frame")
	}

	// The peer goes away (QEMU exits): a blocked Read notices, forgets it,
	// and waits for the next one.
	q1.c.Close()
	go func() {
		n, _ := p.Read(frames)
		done <- n
	}()
	waitFor(t, "peer gone", func() bool { return !p.Operational() })
	q2 := dialQEMU(t, path)
	waitFor(t, "new peer", func() bool { return p.Operational() && p.Stats().Reconnects == 1 })
	q2.send(f)
	select {
	case n := <-done:
		if n != 1 || !bytes.Equal(frames[0].Bytes(), f) {
			t.Fatalf("after reconnect: got %d frames, want the one sent", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after the new peer sent a frame")
	}
	if _, err := p.Write([]Frame{frameOf(f, GSO{})}); err != nil {
		t.Fatal(err)
	}
	if b := q2.recv(); !bytes.Equal(b, f) {
		t.Error("frame written after reconnect differs")
	}

	// A third peer replaces the second while it is still connected.
	q3 := dialQEMU(t, path)
	waitFor(t, "replacement", func() bool { return p.Stats().Reconnects == 2 })
	q3.send(f)
	if n := readWithin(t, p, frames, 5*time.Second); n != 1 {
		t.Fatalf("from the replacing peer: got %d frames, want 1", n)
	}
}

func TestStreamBadLength(t *testing.T) {
	p, path := openStream(t)
	q := dialQEMU(t, path)
	waitFor(t, "peer", p.Operational)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], MaxFrame+1)
	q.c.Write(b[:])
	frames := NewFrames(4, Headroom+MaxFrame)
	done := make(chan int, 1)
	go func() { // the reader is what notices
		n, _ := p.Read(frames)
		done <- n
	}()
	waitFor(t, "peer dropped", func() bool { return p.Stats().Drops[DropPeerError] == 1 && !p.Operational() })
	q.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := q.c.Read(b[:]); !errors.Is(err, io.EOF) {
		t.Errorf("peer read after bad length: got %v, want EOF (connection closed)", err)
	}
	// A runt is dropped, the connection kept.
	q2 := dialQEMU(t, path)
	f, _ := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 1, dport: 2}.build()
	q2.send([]byte{1, 2, 3}, f)
	select {
	case n := <-done:
		if n != 1 || !bytes.Equal(frames[0].Bytes(), f) {
			t.Errorf("got %d frames, want the good one after the runt", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read returned nothing from the second peer")
	}
	if d := p.Stats().Drops[DropRunt]; d != 1 {
		t.Errorf("got %d runt drops, want 1", d)
	}
}

func TestStreamClose(t *testing.T) {
	p, path := openStream(t)
	errc := make(chan error, 1)
	go func() {
		_, err := p.Read(NewFrames(1, Headroom+MaxFrame))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	p.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("got %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Error("socket still accepts connections after Close")
	}
	// A stale socket file does not stop a new listener.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	p2, err := OpenStream(path)
	if err != nil {
		t.Fatalf("reopening over a stale socket: %v", err)
	}
	p2.Close()
}

func FuzzStream(f *testing.F) {
	f.Add([]byte{0, 0, 0, 14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0, 0, 0, 1, 9})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, stream []byte) {
		s := &Stream{rbuf: make([]byte, streamReadBuf)}
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			b.Write(stream)
			b.Close()
		}()
		frames := NewFrames(4, Headroom+MaxFrame)
		for i := 0; i < 1000; i++ {
			n, _, ok := s.readFromConn(a, frames)
			for j := 0; j < n; j++ {
				if frames[j].Len < ethHdrLen || frames[j].Len > MaxFrame {
					t.Fatalf("got a %d-byte frame", frames[j].Len)
				}
			}
			if !ok {
				return
			}
		}
	})
}

func TestStreamSlowPeer(t *testing.T) {
	p, path := openStream(t)
	q := dialQEMU(t, path)
	waitFor(t, "peer", p.Operational)
	// A small socket buffer makes the kernel take batches in pieces, so
	// frames get cut when it fills.
	p.cur.Load().conn.SetWriteBuffer(16 << 10)
	// The peer reads nothing for a while: Write must not wait, drop what
	// does not fit, and keep the framing whole.
	const batches, per = 100, 64
	frames := NewFrames(per, Headroom+1600)
	seq := uint32(0)
	start := time.Now()
	for b := 0; b < batches; b++ {
		for i := range frames {
			f := &frames[i]
			f.Len = 1000 + int(seq%500)
			body := f.Buf[Headroom : Headroom+f.Len]
			for j := range body {
				body[j] = byte(seq)
			}
			binary.BigEndian.PutUint32(body, seq)
			seq++
		}
		if n, err := p.Write(frames); n != per || err != nil {
			t.Fatalf("Write: got %d, %v", n, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("writing to a stalled peer took %v", d)
	}
	st := p.Stats()
	if st.Drops[DropQueueFull] == 0 {
		t.Fatalf("got no queue_full drops after %d frames to a peer that reads nothing (stats %+v)", batches*per, st)
	}
	if st.TxFrames+st.Drops[DropQueueFull] != batches*per {
		t.Errorf("sent %d + dropped %d, want %d", st.TxFrames, st.Drops[DropQueueFull], batches*per)
	}
	// Now the peer reads: every frame it gets is whole, in order.
	go func() { // a frame written now pushes out the kept tail
		time.Sleep(100 * time.Millisecond)
		p.Write(frames[:1])
	}()
	last := int64(-1)
	got := 0
	q.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var l [4]byte
	for uint64(got) < st.TxFrames {
		if _, err := io.ReadFull(q.c, l[:]); err != nil {
			t.Fatalf("after %d frames: %v", got, err)
		}
		b := make([]byte, binary.BigEndian.Uint32(l[:]))
		if _, err := io.ReadFull(q.c, b); err != nil {
			t.Fatalf("after %d frames: %v", got, err)
		}
		s := binary.BigEndian.Uint32(b)
		if int64(s) <= last || len(b) != 1000+int(s%500) || b[len(b)-1] != byte(s) {
			t.Fatalf("frame %d: got seq %d (after %d), %d bytes: framing broken", got, s, last, len(b))
		}
		last = int64(s)
		got++
	}
}
