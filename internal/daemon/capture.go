package daemon

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"roam/api"
	"roam/control"
	"roam/tap"
)

// CaptureHub implements apiserver.Capturer by wrapping the ports a PortFactory opens:
// a wrapped port copies the frames it reads and writes to the capture
// sessions open on it. With no session the cost is one atomic load per
// batch and no allocation. Ports with several queues (tap.Multiqueue) are
// not wrapped, so that the switch still sees their queues; they cannot be
// captured.
type CaptureHub struct {
	mu    sync.Mutex
	ports map[string]*capPort // by spec
}

// NewCaptureHub returns an empty hub.
func NewCaptureHub() *CaptureHub { return &CaptureHub{ports: map[string]*capPort{}} }

// Wrap returns a factory whose ports can be captured.
func (h *CaptureHub) Wrap(f control.PortFactory) control.PortFactory {
	return control.PortFactoryFunc(func(spec string) (tap.Port, error) {
		p, err := f.Open(spec)
		if err != nil {
			return nil, err
		}
		if _, mq := p.(tap.Multiqueue); mq {
			return p, nil
		}
		cp := &capPort{Port: p, hub: h, spec: spec}
		h.mu.Lock()
		h.ports[spec] = cp
		h.mu.Unlock()
		st, isStater := p.(tap.Stater)
		op, isOp := p.(tap.Operationaler)
		switch {
		case isStater && isOp:
			return &capPortFull{capPort: cp, st: st, op: op}, nil
		case isOp:
			return &capPortOp{capPort: cp, op: op}, nil
		}
		return cp, nil
	})
}

type capFrame struct {
	t    time.Time
	data []byte
}

type capSession struct {
	ch      chan capFrame
	dropped atomic.Uint64
}

type capPort struct {
	tap.Port
	hub  *CaptureHub
	spec string
	subs atomic.Pointer[[]*capSession]
}

// Unwrap returns the driver behind the capture wrapper.
func (p *capPort) Unwrap() tap.Port { return p.Port }

// capPortFull also forwards the drivers' optional interfaces.
type capPortFull struct {
	*capPort
	st tap.Stater
	op tap.Operationaler
}

func (p *capPortFull) Stats() tap.Stats  { return p.st.Stats() }
func (p *capPortFull) Operational() bool { return p.op.Operational() }

func (p *capPort) copyOut(frames []tap.Frame) {
	subs := p.subs.Load()
	if subs == nil {
		return
	}
	now := time.Now()
	for i := range frames {
		data := append([]byte(nil), frames[i].Bytes()...)
		for _, s := range *subs {
			select {
			case s.ch <- capFrame{now, data}:
			default:
				s.dropped.Add(1)
			}
		}
	}
}

// Read implements tap.Port.
func (p *capPort) Read(frames []tap.Frame) (int, error) {
	n, err := p.Port.Read(frames)
	if n > 0 {
		p.copyOut(frames[:n])
	}
	return n, err
}

// Write implements tap.Port.
func (p *capPort) Write(frames []tap.Frame) (int, error) {
	p.copyOut(frames)
	return p.Port.Write(frames)
}

// Close implements tap.Port.
func (p *capPort) Close() error {
	p.hub.mu.Lock()
	if p.hub.ports[p.spec] == p {
		delete(p.hub.ports, p.spec)
	}
	p.hub.mu.Unlock()
	return p.Port.Close()
}

func (p *capPort) subscribe(s *capSession, add bool) {
	p.hub.mu.Lock() // serializes subscription changes
	defer p.hub.mu.Unlock()
	var list []*capSession
	if cur := p.subs.Load(); cur != nil {
		for _, o := range *cur {
			if o != s {
				list = append(list, o)
			}
		}
	}
	if add {
		list = append(list, s)
	}
	if len(list) == 0 {
		p.subs.Store(nil)
	} else {
		p.subs.Store(&list)
	}
}

// Capture implements apiserver.Capturer: a pcap stream (Ethernet link type) of the
// frames entering and leaving the port with this spec.
func (h *CaptureHub) Capture(ctx context.Context, spec string, count int, w io.Writer) error {
	h.mu.Lock()
	p := h.ports[spec]
	h.mu.Unlock()
	if p == nil {
		return &api.Error{Code: api.CodeIncorrectState, Message: fmt.Sprintf("port %s is not open or cannot be captured", spec)}
	}
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(tap.MaxFrame, layers.LinkTypeEthernet); err != nil {
		return err
	}
	s := &capSession{ch: make(chan capFrame, 4096)}
	p.subscribe(s, true)
	defer p.subscribe(s, false)
	for n := 0; count == 0 || n < count; n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f := <-s.ch:
			ci := gopacket.CaptureInfo{Timestamp: f.t, CaptureLength: len(f.data), Length: len(f.data)}
			if err := pw.WritePacket(ci, f.data); err != nil {
				return fmt.Errorf("capture %s: %w", spec, err)
			}
		}
	}
	return nil
}

// capPortOp forwards Operationaler alone.
type capPortOp struct {
	*capPort
	op tap.Operationaler
}

func (p *capPortOp) Operational() bool { return p.op.Operational() }
