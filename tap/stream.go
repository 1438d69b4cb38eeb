package tap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Stream is a stream:PATH port: a unix stream socket on which roam listens
// and a QEMU (-netdev stream,server=off,addr.type=unix,addr.path=PATH)
// connects. Each frame on the wire is a 4-byte big-endian length followed by
// the Ethernet frame: no FCS, no padding, no virtio header.
//
// The listener exists from Open until Close, so QEMU may start (and restart)
// at any time; a new peer replaces the previous one. Read blocks while no peer
// is connected; Write drops and counts (DropNoPeer) frames while none is. A
// peer that announces a length over MaxFrame is disconnected and counted
// (DropPeerError). Super-frames and partial checksums written to the port are
// resolved in software (Segment, CompleteChecksum), since the peer takes
// neither.
//
// Peer states:
//
//	          accept              EOF, error or bad length
//	(none) ----------> (peer) ---------------------------> (none)
//	                     |  accept (QEMU restarted)
//	                     +-------> (new peer, old one closed)
type Stream struct {
	name string
	path string
	ln   *net.UnixListener
	cur  atomic.Pointer[streamPeer]
	// ready has a token when a peer was accepted since the reader last looked.
	ready  chan struct{}
	done   chan struct{}
	closed atomic.Bool
	once   sync.Once
	wg     sync.WaitGroup
	counters

	rmu  sync.Mutex // guards the read state below: one reader at a time
	rbuf []byte
	r, w int

	wmu  sync.Mutex // guards the write state below
	iovs [][]byte
	orig [][]byte
	wv   writev
	// tail is the unsent end of a frame that a full socket buffer cut;
	// it goes to tailPeer before any other frame.
	tail     []byte
	tailBuf  []byte
	tailPeer *streamPeer
	tailv    [1][]byte
	pfx      []byte
	soft     softGSO
	peers    atomic.Uint64
}

type streamPeer struct {
	conn *net.UnixConn
	rc   syscall.RawConn
}

// streamReadBuf holds at least one whole frame with its length prefix.
const streamReadBuf = 256 << 10

// OpenStream listens on the unix socket path. A stale socket file left by an
// earlier run is removed first; any other file at path is an error.
func OpenStream(path string) (*Stream, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("stream %s: exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("stream %s: remove stale socket: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("stream %s: listen: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	s := &Stream{
		name:  Spec{Kind: KindStream, Path: path}.String(),
		path:  path,
		ln:    ln,
		ready: make(chan struct{}, 1),
		done:  make(chan struct{}),
		rbuf:  make([]byte, streamReadBuf),
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *Stream) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.closed.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: back off rather than spin.
			select {
			case <-s.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		_ = c.SetWriteBuffer(1 << 20)
		_ = c.SetReadBuffer(1 << 20)
		if s.peers.Add(1) > 1 {
			s.reconnects.Add(1)
		}
		rc, err := c.SyscallConn()
		if err != nil {
			c.Close()
			continue
		}
		if old := s.cur.Swap(&streamPeer{conn: c, rc: rc}); old != nil {
			old.conn.Close()
		}
		if s.closed.Load() {
			if p := s.cur.Swap(nil); p != nil {
				p.conn.Close()
			}
			return
		}
		select {
		case s.ready <- struct{}{}:
		default:
		}
	}
}

// Name implements Port.
func (s *Stream) Name() string { return s.name }

// Path returns the socket's path.
func (s *Stream) Path() string { return s.path }

// Operational reports whether a peer is connected.
func (s *Stream) Operational() bool { return !s.closed.Load() && s.cur.Load() != nil }

// Stats implements Stater.
func (s *Stream) Stats() Stats { return s.snapshot() }

// dropPeer forgets p (unless a newer peer already replaced it) and closes it.
func (s *Stream) dropPeer(p *streamPeer) {
	s.cur.CompareAndSwap(p, nil)
	p.conn.Close()
}

// waitPeer returns the current peer, blocking until there is one.
func (s *Stream) waitPeer() (*streamPeer, error) {
	for {
		if s.closed.Load() {
			return nil, fmt.Errorf("%s: %w", s.name, ErrClosed)
		}
		if p := s.cur.Load(); p != nil {
			return p, nil
		}
		select {
		case <-s.ready:
		case <-s.done:
		}
	}
}

// Read implements Port. It blocks until a peer is connected and has sent at
// least one whole frame, then returns every whole frame already received, up
// to len(frames).
func (s *Stream) Read(frames []Frame) (int, error) {
	if len(frames) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for {
		p, err := s.waitPeer()
		if err != nil {
			return 0, err
		}
		n, bytes, ok := s.readFromConn(p.conn, frames)
		if n > 0 {
			s.rx(n, bytes)
			return n, nil
		}
		if !ok {
			s.dropPeer(p)
			s.r, s.w = 0, 0
		}
	}
}

// readFromConn parses frames out of the read buffer, reading from the peer's
// connection c only while none is complete. ok is false when the peer must be
// dropped.
func (s *Stream) readFromConn(c io.Reader, frames []Frame) (n, bytes int, ok bool) {
	for n < len(frames) {
		if s.w-s.r >= 4 {
			l := int(binary.BigEndian.Uint32(s.rbuf[s.r:]))
			if l > MaxFrame {
				s.drop(DropPeerError)
				return n, bytes, false
			}
			if s.w-s.r >= 4+l {
				body := s.rbuf[s.r+4 : s.r+4+l]
				s.r += 4 + l
				f := &frames[n]
				switch {
				case l < ethHdrLen:
					s.drop(DropRunt)
				case len(f.Buf)-Headroom < l:
					s.drop(DropOversize)
				default:
					f.Off = Headroom
					f.Len = copy(f.Buf[Headroom:], body)
					f.GSO = GSO{}
					bytes += l
					n++
				}
				continue
			}
		}
		if n > 0 {
			return n, bytes, true
		}
		if s.r > 0 {
			s.w = copy(s.rbuf, s.rbuf[s.r:s.w])
			s.r = 0
		}
		m, err := c.Read(s.rbuf[s.w:])
		s.w += m
		if err != nil {
			return n, bytes, false
		}
	}
	return n, bytes, true
}

// Write implements Port. Frames are sent with one writev per batch; Write
// never waits for a slow peer (see flush).
func (s *Stream) Write(frames []Frame) (int, error) {
	if s.closed.Load() {
		return 0, fmt.Errorf("%s: %w", s.name, ErrClosed)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	p := s.cur.Load()
	if p == nil {
		for range frames {
			s.drop(DropNoPeer)
		}
		return len(frames), nil
	}
	s.iovs = s.iovs[:0]
	s.pfx = s.pfx[:0]
	for i := range frames {
		f := &frames[i]
		if f.GSO.Type != GSONone {
			segs := s.soft.segment(f)
			if segs == nil {
				s.drop(DropSegment)
				continue
			}
			for j := range segs {
				s.add(&segs[j])
			}
			// The segments live in the scratch space until the next
			// super-frame: flush now.
			if !s.flush(p) {
				return len(frames), nil
			}
			continue
		}
		if f.Len > MaxFrame {
			s.drop(DropOversize)
			continue
		}
		if f.GSO.NeedsCsum && !CompleteChecksum(f) {
			s.drop(DropBadVnetHdr)
			continue
		}
		s.add(f)
	}
	s.flush(p)
	return len(frames), nil
}

// add queues f, with its length prefix, for the next flush.
func (s *Stream) add(f *Frame) {
	at := len(s.pfx)
	s.pfx = binary.BigEndian.AppendUint32(s.pfx, uint32(f.Len))
	s.iovs = append(s.iovs, s.pfx[at:at+4:at+4], f.Bytes())
}

// flush writes the queued frames without waiting and counts them. When the
// peer's socket buffer fills (the peer stopped reading: a paused VM), the
// frames that did not fit are dropped and counted (DropQueueFull), as a full
// TX ring would; the unsent tail of a frame cut by the full buffer is kept and
// sent first next time, so the framing stays intact. On a write error the
// peer is dropped, the frames are counted as DropNoPeer, and flush returns
// false.
func (s *Stream) flush(p *streamPeer) bool {
	if len(s.iovs) == 0 {
		return true
	}
	// pfx may have moved while it grew; rebuild the prefix slices.
	for i := 0; i < len(s.iovs); i += 2 {
		s.iovs[i] = s.pfx[i*2 : i*2+4 : i*2+4]
	}
	frames := len(s.iovs) / 2
	defer func() {
		clear(s.iovs)
		s.iovs = s.iovs[:0]
		s.pfx = s.pfx[:0]
	}()
	if !s.sendTail(p) {
		for range frames {
			s.drop(DropQueueFull)
		}
		return true
	}
	// writev reslices the elements it writes partly: keep the originals.
	s.orig = append(s.orig[:0], s.iovs...)
	n, full, err := s.wv.write(p, s.iovs)
	if err != nil {
		for range frames {
			s.drop(DropNoPeer)
		}
		s.dropPeer(p)
		return false
	}
	sent, bytes, k := int(n), 0, 0
	for ; k < frames; k++ {
		l := len(s.orig[2*k+1])
		if sent < 4+l {
			break
		}
		sent -= 4 + l
		bytes += l
	}
	if k < frames && sent > 0 {
		// Frame k went out in part: the rest must follow before anything
		// else does.
		if s.tailBuf == nil {
			s.tailBuf = make([]byte, 0, 4+MaxFrame)
		}
		s.tail = append(s.tailBuf[:0], s.orig[2*k]...)
		s.tail = append(s.tail, s.orig[2*k+1]...)
		s.tail = s.tail[sent:]
		s.tailPeer = p
		bytes += len(s.orig[2*k+1])
		k++
	}
	s.tx(k, bytes)
	if full {
		for range frames - k {
			s.drop(DropQueueFull)
		}
	}
	clear(s.orig)
	return true
}

// sendTail sends what is left of a frame cut by a full socket buffer, and
// reports whether it is all gone (or belonged to an earlier peer).
func (s *Stream) sendTail(p *streamPeer) bool {
	if len(s.tail) == 0 {
		return true
	}
	if s.tailPeer != p {
		s.tail, s.tailPeer = s.tail[:0], nil
		return true
	}
	s.tailv[0] = s.tail
	n, _, err := s.wv.write(p, s.tailv[:])
	s.tailv[0] = nil
	if err != nil {
		s.tail, s.tailPeer = s.tail[:0], nil
		return true // the next write finds the error again and drops the peer
	}
	s.tail = s.tail[n:]
	if len(s.tail) == 0 {
		s.tailPeer = nil
		return true
	}
	return false
}

// Close implements Port: it closes the listener (removing the socket file)
// and the peer, and makes a blocked Read return ErrClosed.
func (s *Stream) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.done)
		s.ln.Close()
		if p := s.cur.Swap(nil); p != nil {
			p.conn.Close()
		}
		s.wg.Wait()
	})
	return nil
}

var _ Port = (*Stream)(nil)
