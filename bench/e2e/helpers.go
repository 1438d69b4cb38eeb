package e2e

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"roam/internal/netlab"
)

// Helper runs one traffic helper inside a namespace (the orchestrator starts
// it with `ip netns exec NS roame2e helper NAME ...`). Each is bounded by
// --dur and prints one JSON object on standard output at the end.
func Helper(args []string) error {
	if len(args) == 0 {
		return errors.New("helper: name missing")
	}
	fs := flag.NewFlagSet("helper "+args[0], flag.ContinueOnError)
	to := fs.String("to", "", "destination ip:port")
	port := fs.Int("port", 0, "port to listen on")
	dur := fs.Duration("dur", 3*time.Second, "how long to run (an upper bound for servers)")
	size := fs.Int("size", 18, "UDP payload bytes (18: 64-byte frames with the FCS)")
	rate := fs.Int("rate", 0, "packets per second (0: as fast as possible)")
	workers := fs.Int("workers", 4, "concurrent connections")
	id := fs.String("id", "A", "one-letter name of the answering VM")
	local := fs.String("local", "", "address to restore the connection on")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var res any
	var err error
	switch args[0] {
	case "udpsend":
		res, err = udpSend(*to, *dur, *size, *rate)
	case "udpsink":
		res, err = udpSink(*port, *dur)
	case "connserve":
		err = connServe(*port, *dur)
	case "connclient":
		res, err = connClient(*to, *dur, *workers)
	case "seqecho":
		res, err = seqEcho(*port, *dur, *id)
	case "seqsend":
		res, err = seqSend(*to, *dur, *rate)
	case "tcpecho":
		res, err = tcpEcho(*port, *dur)
	case "tcprestore":
		res, err = tcpRestore(*local, *dur)
	case "tcpclient":
		res, err = tcpClient(*to, *dur)
	default:
		return fmt.Errorf("helper: unknown %q", args[0])
	}
	if err != nil {
		return err
	}
	if res != nil {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	return nil
}

// UDPSendResult is what udpsend reports.
type UDPSendResult struct {
	Sent  int64   `json:"sent"`
	DurS  float64 `json:"dur_s"`
	Rate  float64 `json:"rate"`
	Error string  `json:"error,omitempty"`
}

// udpSend sends size-byte UDP payloads to to for dur, in batches of 64
// through sendmmsg, paced to rate when rate > 0.
func udpSend(to string, dur time.Duration, size, rate int) (*UDPSendResult, error) {
	raddr, err := net.ResolveUDPAddr("udp4", to)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetWriteBuffer(4 << 20)
	pc := ipv4.NewPacketConn(c)
	const batch = 64
	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, size)}
	}
	res := &UDPSendResult{}
	start := time.Now()
	end := start.Add(dur)
	var lastErr error
	for now := start; now.Before(end); now = time.Now() {
		if rate > 0 {
			due := int64(now.Sub(start).Seconds() * float64(rate))
			if res.Sent >= due {
				time.Sleep(200 * time.Microsecond)
				continue
			}
		}
		for i := range msgs {
			binary.BigEndian.PutUint64(msgs[i].Buffers[0][:8], uint64(res.Sent)+uint64(i))
		}
		n, err := pc.WriteBatch(msgs, 0)
		if err != nil {
			// ECONNREFUSED from an ICMP error, or ENOBUFS: keep sending.
			lastErr = err
			time.Sleep(100 * time.Microsecond)
		}
		res.Sent += int64(n)
	}
	res.DurS = time.Since(start).Seconds()
	res.Rate = float64(res.Sent) / res.DurS
	if lastErr != nil {
		res.Error = lastErr.Error()
	}
	return res, nil
}

// UDPSinkResult is what udpsink reports.
type UDPSinkResult struct {
	Packets int64   `json:"packets"`
	SpanS   float64 `json:"span_s"` // first to last packet
}

// udpSink counts the datagrams arriving on port for dur.
func udpSink(port int, dur time.Duration) (*UDPSinkResult, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetReadBuffer(8 << 20)
	pc := ipv4.NewPacketConn(c)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	fmt.Fprintln(os.Stderr, "ready")
	res := &UDPSinkResult{}
	var first, last time.Time
	c.SetReadDeadline(time.Now().Add(dur))
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			continue
		}
		last = time.Now()
		if first.IsZero() {
			first = last
		}
		res.Packets += int64(n)
	}
	if !first.IsZero() {
		res.SpanS = last.Sub(first).Seconds()
	}
	return res, nil
}

// connServe accepts TCP connections on port, sends each one byte and
// closes it when the client has.
func connServe(port int, dur time.Duration) error {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{Port: port})
	if err != nil {
		return err
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(dur))
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			continue
		}
		go func() {
			// One byte, then wait for the client to end the connection.
			c.SetDeadline(time.Now().Add(2 * time.Second))
			c.Write([]byte{1})
			var b [1]byte
			c.Read(b[:])
			c.Close()
		}()
	}
}

// ConnResult is what connclient reports.
type ConnResult struct {
	OK    int64   `json:"ok"`
	Fail  int64   `json:"fail"`
	DurS  float64 `json:"dur_s"`
	Rate  float64 `json:"rate"`
	Error string  `json:"error,omitempty"`
}

// connClient opens connections to to from workers goroutines for dur: each
// connects, reads the server's byte and aborts the connection (RST). It stops early when
// nothing has connected after two seconds.
func connClient(to string, dur time.Duration, workers int) (*ConnResult, error) {
	ap, err := netip.ParseAddrPort(to)
	if err != nil {
		return nil, err
	}
	sa := &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	var ok, fail atomic.Int64
	var mu sync.Mutex
	kinds := map[string]int{}
	note := func(what string, err error) {
		mu.Lock()
		kinds[what+": "+err.Error()]++
		mu.Unlock()
	}
	start := time.Now()
	end := start.Add(dur)
	tv := unix.NsecToTimeval(int64(time.Second))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Blocking sockets on a thread of their own: the connect, the
			// read and the close are three system calls, nothing else.
			runtime.LockOSThread()
			buf := make([]byte, 1)
			for time.Now().Before(end) {
				if ok.Load() == 0 && time.Since(start) > 2*time.Second {
					return
				}
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					fail.Add(1)
					note("socket", err)
					time.Sleep(time.Millisecond)
					continue
				}
				unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
				unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
				if err := unix.Connect(fd, sa); err != nil {
					fail.Add(1)
					note("connect", err)
				} else if n, err := unix.Read(fd, buf); n != 1 {
					fail.Add(1)
					if err == nil {
						err = io.EOF
					}
					note("read", err)
				} else {
					ok.Add(1)
				}
				// Abort (RST) rather than close: tens of thousands of the
				// client's own TIME_WAIT sockets would make connect() fail
				// to find a port within seconds, measuring the client.
				unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
				unix.Close(fd)
			}
		}()
	}
	wg.Wait()
	res := &ConnResult{OK: ok.Load(), Fail: fail.Load(), DurS: time.Since(start).Seconds()}
	res.Rate = float64(res.OK) / res.DurS
	for k, n := range kinds {
		res.Error += fmt.Sprintf("%dx %s; ", n, k)
	}
	return res, nil
}

// Sequenced datagrams are netlab's UDP stream: the sequence number in the
// first 8 bytes, the answering VM's tag in byte 8; seqLen bytes each.
const seqLen = 17

// SeqEchoResult is what seqecho reports.
type SeqEchoResult struct {
	ID       string `json:"id"`
	Answered int64  `json:"answered"`
	LastSeq  int64  `json:"last_seq"`
}

// seqEcho answers every sequenced datagram on port with its own id
// (netlab.UDPEcho) for dur.
func seqEcho(port int, dur time.Duration, id string) (*SeqEchoResult, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		return nil, err
	}
	e := netlab.ServeUDPEcho(c, id[0])
	time.Sleep(dur)
	e.Close()
	res := &SeqEchoResult{ID: id, Answered: e.Count(), LastSeq: -1}
	for seq := range e.Seqs() {
		res.LastSeq = max(res.LastSeq, int64(seq))
	}
	return res, nil
}

// SeqResult is what seqsend reports: what was sent, which VM answered each
// sequence number, and answers per VM in 50 ms bins from the start.
type SeqResult struct {
	StartNS   int64            `json:"start_ns"`
	Sent      int64            `json:"sent"`
	Answered  int64            `json:"answered"`
	Lost      int64            `json:"lost"`
	LostSeqs  []int64          `json:"lost_seqs,omitempty"` // the first 100
	ByVM      map[string]int64 `json:"by_vm"`
	BinMS     int              `json:"bin_ms"`
	Bins      []map[string]int `json:"bins"`            // per bin: VM -> answers
	LastA     int64            `json:"last_seq_a"`      // the last sequence number vmA answered
	FirstB    int64            `json:"first_seq_b"`     // the first one vmB answered
	LastATime int64            `json:"last_a_ns"`       // when it was due to be sent
	Error     string           `json:"error,omitempty"` // a send error, if any
	Reorder   int64            `json:"reordered,omitempty"`
}

// seqSend sends rate sequenced datagrams per second to to for dur
// (netlab.UDPStream), then waits half a second for the last answers.
func seqSend(to string, dur time.Duration, rate int) (*SeqResult, error) {
	raddr, err := net.ResolveUDPAddr("udp4", to)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		return nil, err
	}
	if rate <= 0 {
		rate = 2000
	}
	s := netlab.StartUDPStream(c, rate, seqLen)
	time.Sleep(dur)
	tags := s.Stop(500 * time.Millisecond)
	return seqResult(s.Started(), s.Sent(), rate, tags, s.AnsweredAt()), nil
}

// seqResult sums up a stream of sent datagrams at rate per second from
// start: tags has each answered sequence number's tag, at when its answer
// came (since start).
func seqResult(start time.Time, sent uint64, rate int, tags map[uint64]byte, at map[uint64]time.Duration) *SeqResult {
	const binMS = 50
	res := &SeqResult{StartNS: start.UnixNano(), Sent: int64(sent), BinMS: binMS, ByVM: map[string]int64{}, LastA: -1, FirstB: -1}
	var bins []map[string]int
	for i := uint64(0); i < sent; i++ {
		v, ok := tags[i]
		if !ok {
			res.Lost++
			if len(res.LostSeqs) < 100 {
				res.LostSeqs = append(res.LostSeqs, int64(i))
			}
			continue
		}
		res.Answered++
		res.ByVM[string(rune(v))]++
		b := int(at[i] / (binMS * time.Millisecond))
		for len(bins) <= b {
			bins = append(bins, map[string]int{})
		}
		bins[b][string(rune(v))]++
		switch {
		case v == 'A':
			if res.FirstB >= 0 {
				res.Reorder++
			}
			res.LastA = int64(i)
			res.LastATime = res.StartNS + (int64(i)+1)*int64(time.Second)/int64(rate)
		case v == 'B' && res.FirstB < 0:
			res.FirstB = int64(i)
		}
	}
	if bins == nil {
		bins = []map[string]int{{}}
	}
	res.Bins = bins
	return res
}

// TCPEchoResult is what tcpecho (vmA's side of the TCP survival test) reports.
type TCPEchoResult struct {
	Echoed int64  `json:"echoed"`
	Moved  bool   `json:"moved"`
	Error  string `json:"error,omitempty"`
}

// tcpEcho accepts one connection on port and echoes it. Commands on standard
// input: "dump" puts the socket in repair mode (netlab.Freeze) and prints
// its netlab.TCPState as a JSON line; "close" closes it (silently: it is in
// repair mode) and ends.
func tcpEcho(port int, dur time.Duration) (*TCPEchoResult, error) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{Port: port})
	if err != nil {
		return nil, err
	}
	fmt.Println("listening")
	ln.SetDeadline(time.Now().Add(dur))
	c, err := ln.AcceptTCP()
	ln.Close()
	if err != nil {
		return nil, err
	}
	res := &TCPEchoResult{}
	var echoed atomic.Int64
	var frozen atomic.Bool
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil || frozen.Load() {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			echoed.Add(int64(n))
		}
	}()
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	deadline := time.After(dur)
	for {
		select {
		case cmd, ok := <-cmds:
			if !ok {
				cmd = "close"
			}
			switch cmd {
			case "dump":
				frozen.Store(true)
				st, err := netlab.Freeze(c)
				if err != nil {
					fmt.Println(`{"error":` + quote(err.Error()) + `}`)
					continue
				}
				b, _ := json.Marshal(st)
				fmt.Println(string(b))
				res.Moved = true
			case "close":
				c.Close()
				res.Echoed = echoed.Load()
				return res, nil
			}
		case <-deadline:
			c.Close()
			res.Echoed = echoed.Load()
			return res, nil
		}
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// tcpRestore reads a netlab.TCPState line on standard input and recreates
// the connection on local in repair mode (netlab.Thaw: silent), prints
// "thawed" (or the error), and on "resume" takes it out of repair mode,
// prints "restored" and echoes on it. The orchestrator sends "resume" once
// the gateway sends the connection here: a window probe sent before would
// make the kernel arm create a second conntrack entry for the same public
// tuple (SNAT'd to another port), which the client resets.
func tcpRestore(local string, dur time.Duration) (*TCPEchoResult, error) {
	addr, err := netip.ParseAddr(local)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	if !sc.Scan() {
		return nil, errors.New("tcprestore: no state on standard input")
	}
	var st netlab.TCPState
	if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
		return nil, err
	}
	st.Local = netip.AddrPortFrom(addr, st.Local.Port())
	th, err := netlab.Thaw("", &st)
	if err != nil {
		fmt.Println("error: " + err.Error())
		return &TCPEchoResult{Error: err.Error()}, nil
	}
	fmt.Println("thawed")
	if !sc.Scan() || sc.Text() != "resume" {
		th.Abort()
		return &TCPEchoResult{Error: "tcprestore: no resume"}, nil
	}
	c, err := th.Resume()
	if err != nil {
		fmt.Println("error: " + err.Error())
		return &TCPEchoResult{Error: err.Error()}, nil
	}
	fmt.Println("restored")
	res := &TCPEchoResult{}
	c.SetDeadline(time.Now().Add(dur))
	n, err := io.Copy(c, c)
	res.Echoed = n
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		res.Error = err.Error()
	}
	c.Close()
	return res, nil
}

// TCPClientResult is what the outside end of the TCP survival test reports.
type TCPClientResult struct {
	Sent       int64   `json:"sent"`
	Echoed     int64   `json:"echoed"`
	Survived   bool    `json:"survived"`
	MaxStallMS float64 `json:"max_stall_ms"`
	Error      string  `json:"error,omitempty"`
}

// tcpClient connects to to and, every 10 ms for dur, sends an 8-byte counter
// and waits (at most 3 s) for it to come back.
func tcpClient(to string, dur time.Duration) (*TCPClientResult, error) {
	c, err := net.DialTimeout("tcp4", to, 2*time.Second)
	if err != nil {
		return &TCPClientResult{Error: err.Error()}, nil
	}
	defer c.Close()
	fmt.Fprintln(os.Stderr, "connected")
	res := &TCPClientResult{}
	end := time.Now().Add(dur)
	out, in := make([]byte, 8), make([]byte, 8)
	var stalls []float64
	for i := uint64(0); time.Now().Before(end); i++ {
		t0 := time.Now()
		binary.BigEndian.PutUint64(out, i)
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write(out); err != nil {
			res.Error = err.Error()
			break
		}
		res.Sent++
		if _, err := io.ReadFull(c, in); err != nil {
			res.Error = err.Error()
			break
		}
		if got := binary.BigEndian.Uint64(in); got != i {
			res.Error = fmt.Sprintf("echo %d, want %d", got, i)
			break
		}
		res.Echoed++
		stalls = append(stalls, float64(time.Since(t0).Microseconds())/1000)
		time.Sleep(10 * time.Millisecond)
	}
	sort.Float64s(stalls)
	if len(stalls) > 0 {
		res.MaxStallMS = stalls[len(stalls)-1]
	}
	res.Survived = res.Error == "" && res.Echoed == res.Sent && res.Sent > 0
	return res, nil
}
