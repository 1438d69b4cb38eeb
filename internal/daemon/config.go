package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"

	"roam/api"
	"roam/control"
	vswitch "roam/switch"
)

// Config is roamd's configuration: the flags of DESIGN.md, which a
// config file may also set with the same keys.
type Config struct {
	StateDir    string // state-dir
	Socket      string // socket
	SocketGroup string // socket-group: group that may connect ("roam" when it exists)
	Uplink      string // uplink
	PublicCIDR  string // public-cidr
	PublicIP    string // public-ip
	Upstream    string // upstream: next hop, as an IPv4 address (resolved with ARP) or a MAC (used as is)
	Metrics     string // metrics
	LogLevel    string // log-level
	NoSync      bool   // no-sync: skip fsync on commit (tests and benchmarks only)
	Ports       string // ports: "drivers" (real TAP, AF_PACKET, stream and TUN ports) or "memory" (in-memory twins, for tests)
	// KeepFlows (keep-flows, default true): on SIGTERM or SIGINT roamd
	// hands over (Daemon.Handover) instead of shutting down: TAP devices
	// stay and the flows are saved for the next roamd.
	KeepFlows bool
	// Filtering (filtering) is the PAT filtering behaviour (RFC 4787
	// REQ-8): FilteringAddressPortDependent (the default, as Linux
	// conntrack) admits inbound packets to a mapping only from the remote
	// endpoints it sent to, FilteringAddressDependent from any port of
	// the remote addresses it sent to, FilteringEndpointIndependent from
	// any remote.
	Filtering string
	// MSSClamp (mss-clamp) lowers the MSS option of every TCP SYN roam
	// forwards to at most this value (0, the default, leaves SYNs as they
	// are): for paths whose MTU is below what the guests believe, where
	// fragmentation-needed does not get through.
	MSSClamp uint16
	// ICMPRate (icmp-rate) is the ICMP errors (time exceeded,
	// fragmentation needed, administratively prohibited) one record, or
	// one source address on the uplink, may cause per second, in bursts of
	// twice as many; fragmentation-needed counts apart from the others,
	// and the switch-wide cap (vswitch.DefaultICMPErrorRate) is the last
	// resort (vswitch.Options.ICMPSourceRate).
	ICMPRate int
	// Store (store) is where the objects live: StoreBolt (the default,
	// state.db in StateDir, one host) or StoreEtcd (etcd at
	// EtcdEndpoints under EtcdPrefix, shared by every roamd of a cluster).
	Store         string
	EtcdEndpoints []string // etcd-endpoints: client URLs, comma-separated
	EtcdPrefix    string   // etcd-prefix: every key of the store starts with it
}

// MSS clamp bounds: Linux's TCP_MIN_MSS, and the largest MSS an IPv4
// datagram can carry.
const (
	MinMSSClamp = 88
	MaxMSSClamp = 65495
)

// MaxICMPRate is the highest icmp-rate.
const MaxICMPRate = 1_000_000

// Values of the store key.
const (
	StoreBolt = "bolt"
	StoreEtcd = "etcd"
)

// DefaultEtcdPrefix is the default of etcd-prefix.
const DefaultEtcdPrefix = "/roam/"

// Values of the filtering key.
const (
	FilteringAddressPortDependent = "address-port-dependent"
	FilteringAddressDependent     = "address-dependent"
	FilteringEndpointIndependent  = "endpoint-independent"
)

// SwitchOptions returns the data path options the config asks for.
func (c Config) SwitchOptions() vswitch.Options {
	return vswitch.Options{EndpointIndependentFiltering: c.Filtering == FilteringEndpointIndependent,
		AddressDependentFiltering: c.Filtering == FilteringAddressDependent, MSS: c.MSSClamp, ICMPSourceRate: c.ICMPRate}
}

// DefaultConfig returns the defaults of DESIGN.md.
func DefaultConfig() Config {
	return Config{StateDir: "/var/lib/roam", Socket: "/run/roam/roamd.sock", SocketGroup: "roam", LogLevel: "info", Ports: PortsDrivers, KeepFlows: true,
		Filtering: FilteringAddressPortDependent, Store: StoreBolt, EtcdPrefix: DefaultEtcdPrefix, ICMPRate: vswitch.DefaultICMPSourceRate}
}

// ConfigKeys are the keys a config file may set, as the flags are named.
var ConfigKeys = []string{"state-dir", "socket", "socket-group", "uplink", "public-cidr", "public-ip", "upstream", "metrics", "log-level", "no-sync", "ports", "keep-flows", "filtering", "mss-clamp", "icmp-rate", "store", "etcd-endpoints", "etcd-prefix"}

// Values of the ports key.
const (
	PortsDrivers = "drivers"
	PortsMemory  = "memory"
)

// Set sets one key.
func (c *Config) Set(key, value string) error {
	switch key {
	case "ports":
		if value != PortsDrivers && value != PortsMemory {
			return fmt.Errorf("ports %q: want %q or %q", value, PortsDrivers, PortsMemory)
		}
		c.Ports = value
	case "filtering":
		if value != FilteringAddressPortDependent && value != FilteringAddressDependent && value != FilteringEndpointIndependent {
			return invalid("filtering", value, "want "+FilteringAddressPortDependent+", "+FilteringAddressDependent+" or "+FilteringEndpointIndependent)
		}
		c.Filtering = value
	case "mss-clamp":
		n, err := strconv.ParseUint(value, 10, 16)
		if err != nil || n != 0 && (n < MinMSSClamp || n > MaxMSSClamp) {
			return invalid("mss-clamp", value, fmt.Sprintf("want 0 (off) or %d to %d bytes", MinMSSClamp, MaxMSSClamp))
		}
		c.MSSClamp = uint16(n)
	case "icmp-rate":
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 || n > MaxICMPRate {
			return invalid("icmp-rate", value, fmt.Sprintf("want 1 to %d ICMP errors per second per record and per uplink source", MaxICMPRate))
		}
		c.ICMPRate = n
	case "store":
		if value != StoreBolt && value != StoreEtcd {
			return invalid("store", value, "want "+StoreBolt+" or "+StoreEtcd)
		}
		c.Store = value
	case "etcd-endpoints":
		eps, err := parseEndpoints(value)
		if err != nil {
			return invalid("etcd-endpoints", value, err.Error())
		}
		c.EtcdEndpoints = eps
	case "etcd-prefix":
		if !strings.HasPrefix(value, "/") || !strings.HasSuffix(value, "/") || strings.ContainsAny(value, " \t\n") {
			return invalid("etcd-prefix", value, "want a key prefix that starts and ends with / (e.g. "+DefaultEtcdPrefix+"), without spaces")
		}
		c.EtcdPrefix = value
	case "state-dir":
		c.StateDir = value
	case "socket":
		c.Socket = value
	case "socket-group":
		c.SocketGroup = value
	case "uplink":
		c.Uplink = value
	case "public-cidr":
		c.PublicCIDR = value
	case "public-ip":
		c.PublicIP = value
	case "upstream":
		c.Upstream = value
	case "metrics":
		c.Metrics = value
	case "log-level":
		c.LogLevel = value
	case "keep-flows":
		switch value {
		case "true", "1", "yes", "":
			c.KeepFlows = true
		case "false", "0", "no":
			c.KeepFlows = false
		default:
			return invalid("keep-flows", value, "want true or false")
		}
	case "no-sync":
		switch value {
		case "true", "1", "yes":
			c.NoSync = true
		case "false", "0", "no", "":
			c.NoSync = false
		default:
			return invalid("no-sync", value, "want true or false")
		}
	default:
		return invalid("key", key, "unknown; known keys: "+strings.Join(ConfigKeys, ", "))
	}
	return nil
}

// parseEndpoints parses etcd-endpoints: comma-separated http URLs of
// etcd's client port (host and port, no path). TLS is not supported yet.
func parseEndpoints(value string) ([]string, error) {
	var eps []string
	for _, e := range strings.Split(value, ",") {
		e = strings.TrimSpace(e)
		u, err := url.Parse(e)
		switch {
		case e == "":
			return nil, errors.New("want URL[,URL...], got an empty URL")
		case err == nil && u.Scheme == "https":
			return nil, fmt.Errorf("%q: https (TLS to etcd) is not supported yet", e)
		case err != nil || u.Scheme != "http":
			return nil, fmt.Errorf("%q is not an http:// URL", e)
		case u.Hostname() == "" || u.Port() == "":
			return nil, fmt.Errorf("%q has no host:port", e)
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
			return nil, fmt.Errorf("%q: want only scheme, host and port", e)
		}
		eps = append(eps, e)
	}
	return eps, nil
}

// CheckStore checks that the store keys agree: etcd needs endpoints, and
// endpoints mean etcd.
func (c Config) CheckStore() error {
	switch {
	case c.Store == StoreEtcd && len(c.EtcdEndpoints) == 0:
		return invalid("etcd-endpoints", "", "required with store "+StoreEtcd)
	case c.Store != StoreEtcd && len(c.EtcdEndpoints) > 0:
		return invalid("etcd-endpoints", strings.Join(c.EtcdEndpoints, ","), "set, but store is "+c.Store+" (want store "+StoreEtcd+")")
	}
	return nil
}

// ReadConfigFile reads a config file: one "key = value" (or "key: value",
// or "key value") per line, keys as the flags are named, "#" comments,
// values optionally in double quotes. It returns the keys in file order.
func ReadConfigFile(path string) ([][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.IndexAny(line, "=: \t")
		if i <= 0 {
			return nil, fmt.Errorf("config %s:%d: want key = value, got %q", path, n, line)
		}
		key := strings.TrimSpace(line[:i])
		val := strings.TrimSpace(line[i+1:])
		val = strings.TrimSpace(strings.TrimLeft(val, "=: \t"))
		val = strings.Trim(val, `"`)
		var c Config
		if err := c.Set(key, val); err != nil {
			return nil, fmt.Errorf("config %s:%d: %w", path, n, err)
		}
		out = append(out, [2]string{key, val})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return out, nil
}

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, invalid("log-level", s, "want debug, info, warn or error")
	}
	return l, nil
}

// Gateway returns the public side the config describes.
func (c Config) Gateway() (control.Gateway, error) {
	return control.ParseGateway(c.PublicCIDR, c.PublicIP, c.Upstream, c.Uplink)
}

func invalid(field, value, why string) *api.Error {
	return &api.Error{Code: api.CodeInvalidParameter, Message: fmt.Sprintf("%s %q: %s", field, value, why)}
}
