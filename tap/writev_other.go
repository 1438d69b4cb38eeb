//go:build !linux

package tap

import "net"

// writev writes a vector of buffers to a stream socket.
type writev struct{ b net.Buffers }

func (w *writev) write(p *streamPeer, bufs [][]byte) (int64, error) {
	w.b = bufs
	return w.b.WriteTo(p.conn)
}
