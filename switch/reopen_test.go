package vswitch

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"roam/tap"
	"roam/tap/taptest"
)

// gonePort is a port whose device has disappeared.
type gonePort struct{ *taptest.Port }

func (g gonePort) Read(fs []tap.Frame) (int, error) {
	return 0, fmt.Errorf("read %s: %w", g.Name(), tap.ErrDeviceGone)
}

func TestPortReopens(t *testing.T) {
	w := newWorld(t, Options{})
	var tries atomic.Int32
	fresh := taptest.New("vmX", 64)
	reopen := func() (tap.Port, error) {
		if tries.Add(1) < 3 {
			return nil, fmt.Errorf("vmX: still gone")
		}
		return fresh, nil
	}
	if err := w.sw.AddPortReopen(gonePort{taptest.New("vmX", 64)}, reopen); err != nil {
		t.Fatal(err)
	}
	w.cfg.Records[0].Ports = []string{"vmX"}
	w.apply()
	w.sw.Start()
	defer w.sw.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := w.sw.Port("vmX")
		if st.Reopens == 1 && st.Operational {
			if st.Downs != 1 {
				t.Fatalf("downs %d, want 1", st.Downs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port not reopened: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The reopened port carries traffic: A pings its gateway through it.
	fresh.Inject(echoFrame(t, macA, gwMAC, ipA, gw0, 8, 1, 1))
	if _, ok := fresh.Recv(5 * time.Second); !ok {
		t.Fatal("no answer through the reopened port")
	}
}

// mqPort is a two-queue port: queue 0 is itself.
type mqPort struct {
	*taptest.Port
	q1 *taptest.Port
}

func (m mqPort) Queues() []tap.Port { return []tap.Port{m.Port, m.q1} }

func TestMultiqueueReaders(t *testing.T) {
	w := newWorld(t, Options{})
	mq := mqPort{taptest.New("vmM", 64), taptest.New("vmM-q1", 64)}
	if err := w.sw.AddPort(mq); err != nil {
		t.Fatal(err)
	}
	w.cfg.Records[0].Ports = []string{"vmM"}
	w.apply()
	w.sw.Start()
	defer w.sw.Close()
	// A frame read on queue 1 is processed; the answer goes out of the port.
	mq.q1.Inject(echoFrame(t, macA, gwMAC, ipA, gw0, 8, 1, 1))
	if _, ok := mq.Recv(5 * time.Second); !ok {
		t.Fatal("a frame read on queue 1 got no answer")
	}
}

func (m mqPort) Close() error {
	m.q1.Close()
	return m.Port.Close()
}
