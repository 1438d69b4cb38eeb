package netlab

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestPatternRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  int64
		n    int
	}{{"start", 0, 1000}, {"upload offset", 1 << 40, 70000}, {"odd", 12345, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WritePattern(&b, tc.off, tc.n); err != nil {
				t.Fatal(err)
			}
			if err := ReadPattern(bytes.NewReader(b.Bytes()), tc.off, tc.n); err != nil {
				t.Errorf("read back: %v", err)
			}
			if err := ReadPattern(bytes.NewReader(b.Bytes()), tc.off+1, tc.n); err == nil {
				t.Errorf("read back one byte off: no error, want a mismatch")
			}
		})
	}
}

func TestTraceFilter(t *testing.T) {
	var out bytes.Buffer
	f := roamctlOnly(&out)
	for _, line := range []string{
		"$ ip netns add x\n",
		"$ roamctl subnet create 10.0.0.0/24\n",
		"$ roamctl stats --eni eni-1\n",
		"$ roamctl conntrack list --eni eni-1\n",
		"$ roamctl eni reassign eni-1 --instance vmb\n",
	} {
		f.Write([]byte(line))
	}
	want := "  $ roamctl subnet create 10.0.0.0/24\n  $ roamctl eni reassign eni-1 --instance vmb\n"
	if got := out.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if s := (&TCPState{SndQueue: make([]byte, 10), Unsent: 4}).String(); !strings.Contains(s, "send queue 10 bytes (4 unsent)") {
		t.Errorf("TCPState.String() = %q", s)
	}
}

// TestUniquePrefix: names carry the tag and the PID, and never repeat
// within the process.
func TestUniquePrefix(t *testing.T) {
	seen := map[string]bool{}
	want := fmt.Sprintf("rq%d-", os.Getpid())
	for range 100 {
		p := UniquePrefix("rq")
		if !strings.HasPrefix(p, want) || !strings.HasSuffix(p, "-") {
			t.Fatalf("UniquePrefix(rq) = %q, want %s<N>-", p, want)
		}
		if seen[p] {
			t.Fatalf("UniquePrefix returned %q twice", p)
		}
		seen[p] = true
	}
}

// TestUDPStreamAccounting runs a stream against a loopback echo that drops
// every datagram whose sequence number is 3 mod 10 and answers every 7 mod
// 10 twice: the stream counts each sequence number once, says which were
// lost, and when each answer came.
func TestUDPStreamAccounting(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			seq := binary.BigEndian.Uint64(buf)
			if seq%10 == 3 {
				continue
			}
			buf[8] = 'E'
			srv.WriteToUDPAddrPort(buf[:n], from)
			if seq%10 == 7 {
				srv.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	c, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	s := StartUDPStream(c, 2000, 32)
	for s.Sent() < 200 {
		time.Sleep(5 * time.Millisecond)
	}
	tags := s.Stop(200 * time.Millisecond)
	sent := s.Sent()
	lost := s.Lost(sent)
	for _, q := range lost {
		if q%10 != 3 {
			t.Errorf("sequence number %d lost; only 3 mod 10 are dropped", q)
		}
	}
	if want := int(sent+6) / 10; len(lost) != want {
		t.Errorf("%d lost of %d, want %d", len(lost), sent, want)
	}
	if s.Unanswered(sent) != len(lost) || s.Answered() != len(tags) || s.Answered()+len(lost) != int(sent) {
		t.Errorf("unanswered %d, answered %d, tags %d, lost %d, sent %d: do not add up", s.Unanswered(sent), s.Answered(), len(tags), len(lost), sent)
	}
	if per := s.PerTag(); per['E'] != int64(len(tags)) {
		t.Errorf("per tag %v, want E: %d (duplicates counted once)", per, len(tags))
	}
	if s.Answers() <= int64(len(tags)) {
		t.Errorf("answers %d, want more than %d (duplicates included)", s.Answers(), len(tags))
	}
	at := s.AnsweredAt()
	if len(at) != len(tags) {
		t.Errorf("%d answer times for %d answers", len(at), len(tags))
	}
	for seq, d := range at {
		if due := time.Duration(seq+1) * time.Second / 2000; d < due-time.Millisecond {
			t.Errorf("answer to %d at %v, before it was due (%v)", seq, d, due)
		}
	}
	if s.LastTag() != 'E' {
		t.Errorf("last tag %q, want E", s.LastTag())
	}
}

// TestTCPStateJSON: the state crosses processes (the benchmark's helpers)
// as JSON unchanged.
func TestTCPStateJSON(t *testing.T) {
	st := &TCPState{Local: netip.MustParseAddrPort("10.0.0.2:80"), Remote: netip.MustParseAddrPort("203.0.113.2:40000"),
		SndSeq: 1, RcvSeq: 2, SndQueue: []byte("abc"), Unsent: 1, RcvQueue: []byte("de"), MSS: 1460, Options: 7,
		SndWscale: 7, RcvWscale: 9, Timestamp: 12345, Window: [5]uint32{1, 2, 3, 4, 5}, HaveWindow: true}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var got TCPState
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.String() != st.String() || string(got.SndQueue) != "abc" || string(got.RcvQueue) != "de" || !got.HaveWindow {
		t.Errorf("round trip: got %v, want %v", &got, st)
	}
}
