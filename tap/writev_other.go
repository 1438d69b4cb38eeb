//go:build !linux

package tap

import "net"

// writev writes a vector of buffers to a stream socket.
type writev struct{ b net.Buffers }

// write blocks until bufs are written: outside Linux a slow peer stalls the
// writer.
func (w *writev) write(p *streamPeer, bufs [][]byte) (int64, bool, error) {
	w.b = bufs
	n, err := w.b.WriteTo(p.conn)
	return n, false, err
}
