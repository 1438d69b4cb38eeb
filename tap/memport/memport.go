// Package memport provides in-memory twins of tap.Port: channel-backed
// ports that the daemon's in-memory mode (roamd --ports memory), pcap
// replay and tests use in place of real devices. It is production code:
// tap/taptest only re-exports it for tests.
package memport

import (
	"sync"
	"sync/atomic"
	"time"

	"roam/tap"
)

// Port is a channel-backed tap.Port. Frames injected with Inject come out of
// Read (the "guest" sends them to roam); frames roam writes are queued for
// Recv (the "guest" receives them). When the receive queue is full, written
// frames are dropped and counted in Dropped, as a full TX ring would.
type Port struct {
	name    string
	in      chan []byte
	out     chan []byte
	done    chan struct{}
	once    sync.Once
	Written atomic.Uint64 // frames accepted by Write
	Dropped atomic.Uint64 // frames Write dropped because the queue was full
}

// New returns a port with queues of depth frames each way.
func New(name string, depth int) *Port {
	return &Port{
		name: name,
		in:   make(chan []byte, depth),
		out:  make(chan []byte, depth),
		done: make(chan struct{}),
	}
}

// Name implements tap.Port.
func (p *Port) Name() string { return p.name }

// Inject queues a copy of frame for Read. It returns false when the port is
// closed.
func (p *Port) Inject(frame []byte) bool {
	c := append([]byte(nil), frame...)
	select {
	case p.in <- c:
		return true
	case <-p.done:
		return false
	}
}

// Recv returns the next frame written to the port, waiting at most timeout.
func (p *Port) Recv(timeout time.Duration) ([]byte, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-p.out:
		return f, true
	case <-t.C:
		return nil, false
	}
}

// Pending returns the number of written frames waiting for Recv.
func (p *Port) Pending() int { return len(p.out) }

// Read implements tap.Port.
func (p *Port) Read(frames []tap.Frame) (int, error) {
	var f []byte
	select {
	case f = <-p.in:
	case <-p.done:
		return 0, tap.ErrClosed
	}
	n := 0
	for {
		fr := &frames[n]
		fr.Off = tap.Headroom
		fr.Len = copy(fr.Buf[fr.Off:], f)
		fr.GSO = tap.GSO{}
		n++
		if n == len(frames) {
			return n, nil
		}
		select {
		case f = <-p.in:
		default:
			return n, nil
		}
	}
}

// Write implements tap.Port.
func (p *Port) Write(frames []tap.Frame) (int, error) {
	select {
	case <-p.done:
		return 0, tap.ErrClosed
	default:
	}
	for i := range frames {
		c := append([]byte(nil), frames[i].Bytes()...)
		select {
		case p.out <- c:
			p.Written.Add(1)
		default:
			p.Dropped.Add(1)
		}
	}
	return len(frames), nil
}

// Close implements tap.Port.
func (p *Port) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

// Sink is a tap.Port that never yields frames and counts what is written to
// it, calling OnWrite (when set) for each frame without copying it. Replay and
// benchmarks use it as a destination that costs nothing.
type Sink struct {
	name    string
	done    chan struct{}
	once    sync.Once
	Frames  atomic.Uint64
	Bytes   atomic.Uint64
	OnWrite func(frame []byte)
}

// NewSink returns a sink port.
func NewSink(name string) *Sink { return &Sink{name: name, done: make(chan struct{})} }

// Name implements tap.Port.
func (s *Sink) Name() string { return s.name }

// Read implements tap.Port: it blocks until Close.
func (s *Sink) Read(frames []tap.Frame) (int, error) {
	<-s.done
	return 0, tap.ErrClosed
}

// Write implements tap.Port.
func (s *Sink) Write(frames []tap.Frame) (int, error) {
	var b uint64
	for i := range frames {
		b += uint64(frames[i].Len)
		if s.OnWrite != nil {
			s.OnWrite(frames[i].Bytes())
		}
	}
	s.Frames.Add(uint64(len(frames)))
	s.Bytes.Add(b)
	return len(frames), nil
}

// Close implements tap.Port.
func (s *Sink) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

var (
	_ tap.Port = (*Port)(nil)
	_ tap.Port = (*Sink)(nil)
)
