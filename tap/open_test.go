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
		{"tap:vm1", Spec{Kind: KindTAP, Name: "vm1"}, ""},
		{"tap:vm1@ns1", Spec{Kind: KindTAP, Name: "vm1", Netns: "ns1"}, ""},
		{"netdev:eth0@blue.1", Spec{Kind: KindNetdev, Name: "eth0", Netns: "blue.1"}, ""},
		{"tap:vm1@/proc/1/ns/net", Spec{}, "bad namespace"},
		{"netdev:tap0", Spec{Kind: KindNetdev, Name: "tap0"}, ""},
		{"tun:up0@pub", Spec{Kind: KindTUN, Name: "up0", Netns: "pub"}, ""},
		{"stream:/run/roam/vm1.sock", Spec{Kind: KindStream, Path: "/run/roam/vm1.sock"}, ""},
		{"stream:/run/rel@x:y", Spec{Kind: KindStream, Path: "/run/rel@x:y"}, ""},
		{"stream:rel@x:y", Spec{}, "must be absolute and clean"},
		{"stream:/run/../x", Spec{}, "must be absolute and clean"},
		{"tap:vm+1.a_b-c", Spec{Kind: KindTAP, Name: "vm+1.a_b-c"}, ""},
		{"tap:..", Spec{}, "reserved"},
		{"tap:vm#1", Spec{}, "contains"},
		{"tap:vm1@.ns", Spec{}, "bad namespace"},
		{"tap:vm1@" + strings.Repeat("n", 65), Spec{}, "bad namespace"},
		{"tun:t0@", Spec{}, "bad namespace"},
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

// TestSpecErrorField checks that a spec error names the field at fault and
// its value, and that Check applies ParseSpec's rules to a built Spec.
func TestSpecErrorField(t *testing.T) {
	for _, tc := range []struct{ spec, field, value string }{
		{"tap:a/b", "interface name", "a/b"},
		{"netdev:eth0@-x", "namespace", "-x"},
		{"stream:x.sock", "socket path", "x.sock"},
		{"udp:x", "kind", "udp"},
	} {
		_, err := ParseSpec(tc.spec)
		var se *SpecError
		if !errors.As(err, &se) || se.Field != tc.field || se.Value != tc.value || se.Spec != tc.spec {
			t.Errorf("%s: got %#v, want a SpecError for %s %q", tc.spec, err, tc.field, tc.value)
		}
	}
	if err := (Spec{Kind: KindTAP, Name: "vm1", Netns: "/proc/1/ns/net"}).Check(); !errors.Is(err, ErrBadSpec) {
		t.Errorf("Check of a path namespace: got %v, want ErrBadSpec", err)
	}
	if err := (Spec{Kind: KindNetdev, Name: "eth0", Netns: "blue"}).Check(); err != nil {
		t.Errorf("Check: got %v", err)
	}
}
