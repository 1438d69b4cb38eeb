package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// A datagram of a UDP stream carries its sequence number in its first 8
// bytes; the echo writes its tag (which VM answers) in byte 8 of the copy
// it sends back.
const seqHeader = 9

// UDPEcho answers every datagram on its socket with a copy tagged with
// Tag, and remembers which sequence numbers and which peers it saw.
type UDPEcho struct {
	Tag  byte
	conn *net.UDPConn

	count atomic.Int64
	mu    sync.Mutex
	seqs  map[uint64]bool
	peers map[string]int
	done  chan struct{}
}

// ServeUDPEcho starts answering on c until Close.
func ServeUDPEcho(c *net.UDPConn, tag byte) *UDPEcho {
	e := &UDPEcho{Tag: tag, conn: c, seqs: map[uint64]bool{}, peers: map[string]int{}, done: make(chan struct{})}
	go e.loop()
	return e
}

func (e *UDPEcho) loop() {
	defer close(e.done)
	buf := make([]byte, 65536)
	for {
		n, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n >= seqHeader {
			buf[8] = e.Tag
			e.mu.Lock()
			e.seqs[binary.BigEndian.Uint64(buf)] = true
			e.peers[from.String()]++
			e.mu.Unlock()
		}
		e.count.Add(1)
		e.conn.WriteToUDPAddrPort(buf[:n], from)
	}
}

// Count returns how many datagrams the echo received.
func (e *UDPEcho) Count() int64 { return e.count.Load() }

// Seqs returns a copy of the sequence numbers received.
func (e *UDPEcho) Seqs() map[uint64]bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[uint64]bool, len(e.seqs))
	for k := range e.seqs {
		m[k] = true
	}
	return m
}

// Peers returns the source address:port of what it received, with counts.
func (e *UDPEcho) Peers() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]int, len(e.peers))
	for k, v := range e.peers {
		m[k] = v
	}
	return m
}

// Close stops the echo and closes its socket.
func (e *UDPEcho) Close() {
	e.conn.Close()
	<-e.done
}

// UDPStream sends numbered datagrams at a fixed rate on a connected socket
// and records which answers come back and from which echo (tag). Because
// the socket is connected, only answers from the address and port it
// talks to reach it.
type UDPStream struct {
	conn *net.UDPConn
	rate int
	size int

	start   time.Time
	next    atomic.Uint64 // sequence number of the next datagram
	answers atomic.Int64
	last    atomic.Uint32 // tag of the last answer
	mu      sync.Mutex
	tagOf   map[uint64]byte          // the first answer's tag
	at      map[uint64]time.Duration // when the first answer came, since start
	perTag  map[byte]int64

	stop     chan struct{}
	sendDone chan struct{}
	recvDone chan struct{}
}

// StartUDPStream sends size-byte datagrams (at least 9) on c at rate per
// second until Stop.
func StartUDPStream(c *net.UDPConn, rate, size int) *UDPStream {
	if size < seqHeader {
		size = seqHeader
	}
	s := &UDPStream{conn: c, rate: rate, size: size, start: time.Now(), tagOf: map[uint64]byte{}, at: map[uint64]time.Duration{}, perTag: map[byte]int64{},
		stop: make(chan struct{}), sendDone: make(chan struct{}), recvDone: make(chan struct{})}
	go s.send()
	go s.recv()
	return s
}

func (s *UDPStream) send() {
	defer close(s.sendDone)
	buf := make([]byte, s.size)
	start := s.start
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		due := uint64(time.Since(start).Seconds() * float64(s.rate))
		for s.next.Load() < due {
			seq := s.next.Load()
			binary.BigEndian.PutUint64(buf, seq)
			buf[8] = 0
			// Counted before it is written: a datagram numbered at
			// or above what Sent returned is written after that call.
			s.next.Store(seq + 1)
			s.conn.Write(buf) // a refused or dropped datagram is a lost one
		}
	}
}

func (s *UDPStream) recv() {
	defer close(s.recvDone)
	buf := make([]byte, 65536)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			var op *net.OpError
			if errors.As(err, &op) && !errors.Is(err, net.ErrClosed) && !op.Timeout() {
				continue // e.g. ECONNREFUSED from an ICMP error: keep listening
			}
			return
		}
		if n < seqHeader {
			continue
		}
		seq, tag := binary.BigEndian.Uint64(buf), buf[8]
		s.mu.Lock()
		if _, dup := s.tagOf[seq]; !dup {
			s.tagOf[seq] = tag
			s.at[seq] = time.Since(s.start)
			s.perTag[tag]++
		}
		s.mu.Unlock()
		s.answers.Add(1)
		s.last.Store(uint32(tag))
	}
}

// Sent returns how many datagrams were sent: sequence numbers below it;
// those at or above it are written after the call.
func (s *UDPStream) Sent() uint64 { return s.next.Load() }

// Answers returns how many answers arrived (duplicates included).
func (s *UDPStream) Answers() int64 { return s.answers.Load() }

// PerTag returns how many sequence numbers each echo answered.
func (s *UDPStream) PerTag() map[byte]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[byte]int64{}
	for k, v := range s.perTag {
		m[k] = v
	}
	return m
}

// Unanswered returns how many of the datagrams numbered below n have had
// no answer yet.
func (s *UDPStream) Unanswered(n uint64) int { return len(s.Lost(n)) }

// Lost returns, in order, the sequence numbers below n that have had no
// answer yet.
func (s *UDPStream) Lost(n uint64) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lost []uint64
	for seq := uint64(0); seq < n; seq++ {
		if _, ok := s.tagOf[seq]; !ok {
			lost = append(lost, seq)
		}
	}
	return lost
}

// Answered returns how many sequence numbers have had an answer.
func (s *UDPStream) Answered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tagOf)
}

// Started returns when the stream started: datagram seq is due at
// Started() + (seq+1)/rate.
func (s *UDPStream) Started() time.Time { return s.start }

// AnsweredAt returns a copy of when the first answer to each answered
// sequence number came, as time since Started.
func (s *UDPStream) AnsweredAt() map[uint64]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[uint64]time.Duration, len(s.at))
	for k, v := range s.at {
		m[k] = v
	}
	return m
}

// LastTag returns the tag of the latest answer (0: none yet).
func (s *UDPStream) LastTag() byte { return byte(s.last.Load()) }

// Stop stops sending, waits grace for the last answers, closes the socket
// and returns, for every sequence number sent, the tag of its answer (a
// missing key is a lost datagram).
func (s *UDPStream) Stop(grace time.Duration) map[uint64]byte {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.sendDone
	time.Sleep(grace)
	s.conn.Close()
	<-s.recvDone
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tagOf
}

// PatternByte is the byte at offset off of the endless pattern that TCP
// tests send, so that the receiver checks every byte's value and place.
func PatternByte(off int64) byte {
	x := uint64(off) * 0x9E3779B97F4A7C15
	return byte(x>>56) ^ byte(off)
}

func fillPattern(b []byte, off int64) {
	for i := range b {
		b[i] = PatternByte(off + int64(i))
	}
}

// WritePattern writes n bytes of the pattern from offset off.
func WritePattern(w io.Writer, off int64, n int) error {
	b := make([]byte, n)
	fillPattern(b, off)
	_, err := w.Write(b)
	return err
}

// ReadPattern reads n bytes and checks that they are the pattern from
// offset off.
func ReadPattern(r io.Reader, off int64, n int) error {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	for i, c := range b {
		if want := PatternByte(off + int64(i)); c != want {
			return fmt.Errorf("byte at offset %d: got %#02x, want %#02x", off+int64(i), c, want)
		}
	}
	return nil
}

// Sender writes the pattern on a TCP connection at a bounded rate (a
// download), and can move the connection between two writes.
type Sender struct {
	rate int // bytes per second; 0: as fast as the connection takes them

	mu   sync.Mutex
	conn *net.TCPConn
	sent atomic.Int64
	move chan moveReq
	stop chan struct{}
	done chan struct{}
	err  error
}

// StartSender starts writing the pattern on c from offset 0.
func StartSender(c *net.TCPConn, bytesPerSec int) *Sender {
	s := &Sender{rate: bytesPerSec, conn: c, move: make(chan moveReq),
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *Sender) loop() {
	defer close(s.done)
	const chunk = 16 << 10
	buf := make([]byte, chunk)
	start := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case req := <-s.move:
			s.mu.Lock()
			c, err := req.fn(s.conn)
			if err == nil {
				s.conn = c
			}
			s.mu.Unlock()
			req.done <- err
			if err != nil {
				s.err = err
				return
			}
			continue
		default:
		}
		off := s.sent.Load()
		if s.rate > 0 && float64(off) > time.Since(start).Seconds()*float64(s.rate) {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		fillPattern(buf, off)
		s.mu.Lock()
		c := s.conn
		s.mu.Unlock()
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Write(buf)
		s.sent.Add(int64(n))
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			s.err = err
			return
		}
	}
}

// Sent returns how many bytes the sender has handed to its socket.
func (s *Sender) Sent() int64 { return s.sent.Load() }

// Conn returns the connection the sender writes on now.
func (s *Sender) Conn() *net.TCPConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// Move runs fn between two writes, with no write in progress: fn gets the
// current connection and returns the one to carry on with.
func (s *Sender) Move(fn func(*net.TCPConn) (*net.TCPConn, error)) error {
	req := moveReq{fn: fn, done: make(chan error, 1)}
	select {
	case s.move <- req:
	case <-s.done:
		return fmt.Errorf("sender stopped: %v", s.err)
	}
	return <-req.done
}

type moveReq struct {
	fn   func(*net.TCPConn) (*net.TCPConn, error)
	done chan error
}

// Stop stops writing and returns the error that stopped it earlier, if any.
func (s *Sender) Stop() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.err
}

// Receiver reads the pattern from a TCP connection and checks every byte.
type Receiver struct {
	conn   *net.TCPConn
	got    atomic.Int64
	paused atomic.Bool
	done   chan struct{}
	err    error
}

// StartReceiver starts reading c from pattern offset 0.
func StartReceiver(c *net.TCPConn) *Receiver {
	r := &Receiver{conn: c, done: make(chan struct{})}
	go r.loop()
	return r
}

func (r *Receiver) loop() {
	defer close(r.done)
	buf := make([]byte, 64<<10)
	for {
		if r.paused.Load() {
			time.Sleep(time.Millisecond)
			continue
		}
		r.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := r.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = nil // a chance to pause
		}
		off := r.got.Load()
		for i := 0; i < n; i++ {
			if want := PatternByte(off + int64(i)); buf[i] != want {
				r.err = fmt.Errorf("byte at offset %d: got %#02x, want %#02x", off+int64(i), buf[i], want)
				return
			}
		}
		r.got.Add(int64(n))
		if err != nil {
			r.err = err
			return
		}
	}
}

// Pause stops reading (the sender's window closes and its queue grows)
// until Resume.
func (r *Receiver) Pause() { r.paused.Store(true) }

// Resume reads again.
func (r *Receiver) Resume() { r.paused.Store(false) }

// Got returns how many bytes arrived intact so far.
func (r *Receiver) Got() int64 { return r.got.Load() }

// Err returns why the receiver stopped (nil while it runs).
func (r *Receiver) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Close closes the connection and waits for the reader.
func (r *Receiver) Close() error {
	r.conn.Close()
	<-r.done
	return r.err
}

// TCPEcho accepts connections and echoes what each sends, remembering the
// peers it saw.
type TCPEcho struct {
	l        *net.TCPListener
	accepted atomic.Int64
	mu       sync.Mutex
	peers    []string
	done     chan struct{}
}

// ServeTCPEcho starts echoing on every connection l accepts, until Close.
func ServeTCPEcho(l *net.TCPListener) *TCPEcho {
	e := &TCPEcho{l: l, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.mu.Lock()
			e.peers = append(e.peers, c.RemoteAddr().String())
			e.mu.Unlock()
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return e
}

// Accepted returns how many connections the echo accepted.
func (e *TCPEcho) Accepted() int64 { return e.accepted.Load() }

// Peers returns the remote address:port of every accepted connection.
func (e *TCPEcho) Peers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.peers...)
}

// Close stops accepting.
func (e *TCPEcho) Close() {
	e.l.Close()
	<-e.done
}

// RoundTrip writes msg on c and reads it back within 5 s.
func RoundTrip(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != msg {
		return fmt.Errorf("echo: got %q, want %q", b, msg)
	}
	return nil
}
