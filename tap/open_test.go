package tap

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    Spec
		wantErr string
	}{
		{"tap:vm1", Spec{Kind: KindTAP, IfName: "vm1"}, ""},
		{"tap:vm1@ns1", Spec{Kind: KindTAP, IfName: "vm1", Netns: "ns1"}, ""},
		{"tap:vm1@/proc/1/ns/net", Spec{Kind: KindTAP, IfName: "vm1", Netns: "/proc/1/ns/net"}, ""},
		{"netdev:tap0", Spec{Kind: KindNetdev, IfName: "tap0"}, ""},
		{"tun:up0@pub", Spec{Kind: KindTUN, IfName: "up0", Netns: "pub"}, ""},
		{"stream:/run/roam/vm1.sock", Spec{Kind: KindStream, Path: "/run/roam/vm1.sock"}, ""},
		{"stream:rel@x:y", Spec{Kind: KindStream, Path: "rel@x:y"}, ""},
		{"vm1", Spec{}, "want KIND:ARG"},
		{"tcp:vm1", Spec{}, `unknown kind "tcp"`},
		{"tap:", Spec{}, "empty interface name"},
		{"tap:averyveryverylongname", Spec{}, "the limit is 15"},
		{"tap:a/b", Spec{}, "contains"},
		{"tap:vm1@", Spec{}, "bad namespace"},
		{"tap:vm1@a/b", Spec{}, "bad namespace"},
		{"stream:", Spec{}, "empty socket path"},
		{"stream:/" + strings.Repeat("x", 120), Spec{}, "the limit is 107"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseSpec(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), tc.spec) {
					t.Fatalf("got error %v, want one wrapping ErrBadSpec, naming the spec and saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if got.String() != tc.spec {
				t.Errorf("String: got %q, want %q", got.String(), tc.spec)
			}
		})
	}
}

func TestOpenBadSpec(t *testing.T) {
	_, err := Open("bogus:x", Options{})
	if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "bogus:x") {
		t.Errorf("got %v, want an error wrapping ErrBadSpec naming the spec", err)
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"tap:vm1@ns", "netdev:eth0", "stream:/tmp/x", "tun:t", "x:y@z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			return
		}
		back, err := ParseSpec(sp.String())
		if err != nil || back != sp {
			t.Fatalf("%q parsed to %+v, whose String %q parses to %+v, %v", s, sp, sp.String(), back, err)
		}
	})
}

func TestDropReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := DropReason(1); r < NumDropReasons; r++ {
		n := r.String()
		if n == "" || n == "unknown" || seen[n] {
			t.Errorf("reason %d: got name %q, want a unique name", r, n)
		}
		seen[n] = true
	}
}
