// Package taptest gives tests the in-memory ports of package memport under
// their historical names; the ports themselves live in tap/memport, which
// production code (roamd --ports memory, pcap replay) imports instead.
package taptest

import "roam/tap/memport"

// Port is a channel-backed tap.Port (memport.Port).
type Port = memport.Port

// Sink is a tap.Port that discards and counts what is written (memport.Sink).
type Sink = memport.Sink

// New returns a port with queues of depth frames each way.
func New(name string, depth int) *Port { return memport.New(name, depth) }

// NewSink returns a sink port.
func NewSink(name string) *Sink { return memport.NewSink(name) }
