package control

import (
	"errors"
	"strings"
	"testing"

	"roam/tap"
)

// TestParseSpecRoles checks that parseSpec takes tap.ParseSpec's rules and
// adds the role's, and that its errors are InvalidParameter naming the
// field, the spec and the part of the spec at fault.
func TestParseSpecRoles(t *testing.T) {
	tests := []struct {
		spec   string
		uplink bool
		want   string // canonical spec, or "" for an error
		errHas []string
	}{
		{"tap:vm1@blue", false, "tap:vm1@blue", nil},
		{"netdev:eth0@blue", false, "netdev:eth0@blue", nil},
		{"stream:/run/vm1.sock", false, "stream:/run/vm1.sock", nil},
		{"tun:up0@pub", true, "tun:up0@pub", nil},
		{"tun:up0", false, "", []string{"ports[0]", "tun:up0", "only for the uplink"}},
		{"stream:/run/vm1.sock", true, "", []string{"ports[0]", "the uplink is"}},
		{"stream:vm1.sock", false, "", []string{"ports[0]", `socket path "vm1.sock"`, "absolute"}},
		{"tap:abcdefghijklmnop", false, "", []string{"ports[0]", `interface name "abcdefghijklmnop"`, "the limit is 15"}},
		{"tap:vm1@a/b", false, "", []string{"ports[0]", `namespace "a/b"`}},
		{"vhost:x", false, "", []string{"ports[0]", `kind "vhost"`}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			sp, err := parseSpec("ports[0]", tc.spec, tc.uplink)
			if tc.want != "" {
				if err != nil || sp.String() != tc.want {
					t.Fatalf("got %v, %v, want %s", sp, err, tc.want)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidParameter {
				t.Fatalf("got %v, want an InvalidParameter error", err)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(e.Message, s) {
					t.Errorf("got message %q, want it to say %q", e.Message, s)
				}
			}
		})
	}
	// Spec errors keep the parser's error as their cause.
	_, err := parseSpec("uplink", "tap:", true)
	if !errors.Is(err, tap.ErrBadSpec) {
		t.Errorf("got %v, want an error wrapping tap.ErrBadSpec", err)
	}
}
