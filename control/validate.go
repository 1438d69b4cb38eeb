package control

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"roam/tap"
)

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// parseSpec parses a port spec with tap.ParseSpec, the one parser, and adds
// the rule of its role: tun: only for the uplink, stream: never for it.
// field names the flag or field in errors.
func parseSpec(field, spec string, uplink bool) (tap.Spec, error) {
	sp, err := tap.ParseSpec(spec)
	if se := (*tap.SpecError)(nil); errors.As(err, &se) {
		return tap.Spec{}, &Error{Code: CodeInvalidParameter, Cause: err,
			Message: fmt.Sprintf("%s %q: %s %q: %s", field, spec, se.Field, se.Value, se.Reason)}
	} else if err != nil {
		return tap.Spec{}, invalid(field, spec, err.Error())
	}
	switch {
	case sp.Kind == tap.KindTUN && !uplink:
		return tap.Spec{}, invalid(field, spec, "tun: ports are only for the uplink")
	case sp.IsStream() && uplink:
		return tap.Spec{}, invalid(field, spec, "the uplink is tap:, netdev: or tun:")
	}
	return sp, nil
}

func validName(field, name string) error {
	if !nameRe.MatchString(name) {
		return invalid(field, name, "must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit")
	}
	return nil
}

func validText(field, s string) error {
	if len(s) > 255 {
		return invalid(field, s[:32]+"...", "longer than 255 bytes")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return invalid(field, s, "contains control characters")
	}
	return nil
}

func validTags(tags map[string]string) error {
	if len(tags) > 50 {
		return invalid("tags", len(tags), "at most 50 tags")
	}
	for k, v := range tags {
		if k == "" || len(k) > 128 {
			return invalid("tags", k, "tag keys are 1-128 bytes")
		}
		if err := validText("tags."+k, v); err != nil {
			return err
		}
	}
	return nil
}

// parseProtocol maps "all", "tcp", "udp", "icmp" or a number to an IP
// protocol number (0 = all).
func parseProtocol(p string) (uint8, bool) {
	switch strings.ToLower(p) {
	case "", "all", "-1":
		return 0, true
	case "tcp":
		return 6, true
	case "udp":
		return 17, true
	case "icmp":
		return 1, true
	}
	n, err := strconv.ParseUint(p, 10, 8)
	if err != nil {
		return 0, false
	}
	return uint8(n), true
}

func canonicalProtocol(p uint8) string {
	switch p {
	case 0:
		return "all"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

// reserved reports whether ip is the network, gateway or broadcast address
// of prefix; roam never gives those to a record.
func reserved(prefix netip.Prefix, ip netip.Addr) (string, bool) {
	netAddr := prefix.Masked().Addr()
	switch {
	case ip == netAddr:
		return "the network address", true
	case ip == netAddr.Next():
		return "the gateway", true
	case ip == lastAddr(prefix):
		return "the broadcast address", true
	}
	return "", false
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	bits := p.Bits()
	for i := 0; i < 4; i++ {
		for b := 0; b < 8; b++ {
			if i*8+b >= bits {
				a[i] |= 0x80 >> b
			}
		}
	}
	return netip.AddrFrom4(a)
}

func parseAddr(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, invalid(field, s, "not an IPv4 address")
	}
	return a, nil
}

// specIs reports whether spec parses and its kind satisfies is (for
// example tap.Spec.IsStream): the one way control asks what a spec names.
func specIs(spec string, is func(tap.Spec) bool) bool {
	sp, err := tap.ParseSpec(spec)
	return err == nil && is(sp)
}

// streamPath is the socket path of a stream: spec, "" for any other.
func streamPath(spec string) string {
	if sp, err := tap.ParseSpec(spec); err == nil && sp.IsStream() {
		return sp.Path
	}
	return ""
}
