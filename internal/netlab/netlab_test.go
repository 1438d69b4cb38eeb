package netlab

import (
	"bytes"
	"strings"
	"testing"
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
