package control

import (
	"net"
	"net/netip"
)

// ParseGateway parses the public side as roamd's keys give it: the pool
// (public-cidr), the gateway's own address (public-ip), the next hop
// (upstream: a MAC, used as is, or an IPv4 address, resolved with ARP) and
// the uplink port spec; each may be empty.
func ParseGateway(publicCIDR, publicIP, upstream, uplink string) (Gateway, error) {
	var g Gateway
	if publicCIDR != "" {
		p, err := netip.ParsePrefix(publicCIDR)
		if err != nil {
			return g, invalid("public-cidr", publicCIDR, "not a CIDR")
		}
		g.PublicCIDR = p
	}
	if publicIP != "" {
		a, err := parseAddr("public-ip", publicIP)
		if err != nil {
			return g, err
		}
		g.PublicIP = a
	}
	if upstream != "" {
		if mac, err := net.ParseMAC(upstream); err == nil {
			g.UpstreamMAC = mac
		} else if a, err := parseAddr("upstream", upstream); err == nil {
			g.Upstream = a
		} else {
			return g, invalid("upstream", upstream, "want the next hop's MAC or IPv4 address")
		}
	}
	if uplink != "" {
		sp, err := parseSpec("uplink", uplink, true)
		if err != nil {
			return g, err
		}
		g.Uplink = sp.String()
	}
	return g, validateGateway(g)
}

// SetGateway changes the public side and republishes. Refused when an
// allocated public IP would fall outside the new pool or be the gateway's
// own address.
func (s *Service) SetGateway(g Gateway) error {
	if err := validateGateway(g); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range sortedValues(s.st.eips) {
		if !g.PublicCIDR.IsValid() || !g.PublicCIDR.Contains(a.PublicIP) {
			return errorf(CodeDependencyViolation, "public-cidr %s: allocated public ip %s (%s) would be outside the pool", g.PublicCIDR, a.PublicIP, a.ID)
		}
		if a.PublicIP == g.PublicIP {
			return errorf(CodeDependencyViolation, "public-ip %s is allocated as %s", g.PublicIP, a.ID)
		}
	}
	old := s.gw
	s.gw = g
	cfg := s.config(s.st.view(), s.st.gen, s.st.recs)
	if err := s.dp.Apply(cfg); err != nil {
		s.gw = old
		return &Error{Code: CodeDataPath, Message: "the data path refused the new public side: " + err.Error(), Cause: err}
	}
	s.last = cfg
	return nil
}

// Census is a count of the committed state, read by the metrics at scrape
// time.
type Census struct {
	Objects  map[string]int // by kind: subnet, security_group, instance, eni, eip
	Gen      uint64
	ENIs     []string   // every record id
	PublicIP netip.Addr // the gateway's own public address, if any
}

// Census counts the committed state.
func (s *Service) Census() Census {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := Census{Gen: s.st.gen, PublicIP: s.gw.PublicIP, ENIs: make([]string, 0, len(s.st.enis)),
		Objects: map[string]int{"subnet": len(s.st.subnets), "security_group": len(s.st.groups),
			"instance": len(s.st.instances), "eni": len(s.st.enis), "eip": len(s.st.eips)}}
	for id := range s.st.enis {
		c.ENIs = append(c.ENIs, id)
	}
	return c
}

// Gateway returns the public side in force.
func (s *Service) Gateway() Gateway {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gw
}

// ProtocolName is the canonical name of an IP protocol number ("tcp",
// "udp", "icmp" or the number).
func ProtocolName(p uint8) string { return canonicalProtocol(p) }
