package tap

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writev writes a vector of buffers to a non-blocking stream socket with
// writev(2), through the socket's RawConn (so that it never races Close) and
// without allocating (net.Buffers costs an allocation per call). It never
// waits: when the socket buffer is full it stops and says so.
type writev struct {
	bufs [][]byte
	iov  []unix.Iovec
	at   int // first buffer not yet written
	n    int64
	full bool
	err  error
	fn   func(fd uintptr) bool
}

// write writes as much of bufs as the socket takes, and reports how many
// bytes that was and whether it stopped because the socket buffer was full.
// It may reslice the elements of bufs.
func (w *writev) write(p *streamPeer, bufs [][]byte) (int64, bool, error) {
	if w.fn == nil {
		w.fn = w.some
	}
	w.bufs, w.at, w.n, w.full, w.err = bufs, 0, 0, false, nil
	w.iov = w.iov[:0]
	for _, b := range bufs {
		var v unix.Iovec
		if len(b) > 0 {
			v.Base = &b[0]
		}
		v.SetLen(len(b))
		w.iov = append(w.iov, v)
	}
	err := p.rc.Write(w.fn)
	if err == nil {
		err = w.err
	}
	clear(w.iov)
	w.bufs = nil
	return w.n, w.full, err
}

func (w *writev) some(fd uintptr) bool {
	for w.at < len(w.iov) {
		cnt := min(len(w.iov)-w.at, 1024) // IOV_MAX
		r, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[w.at])), uintptr(cnt))
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			w.full = true
			return true
		default:
			w.err = syscall.Errno(e)
			return true
		}
		n := int(r)
		w.n += int64(n)
		for n > 0 && w.at < len(w.iov) {
			b := w.bufs[w.at]
			if n < len(b) {
				w.bufs[w.at] = b[n:]
				w.iov[w.at].Base = &b[n]
				w.iov[w.at].SetLen(len(b) - n)
				n = 0
				break
			}
			n -= len(b)
			w.at++
		}
		for w.at < len(w.iov) && len(w.bufs[w.at]) == 0 {
			w.at++
		}
	}
	return true
}
