package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/taptest"
)

// DaemonConfig is roamd's configuration: the flags of DESIGN.md, which a
// config file may also set with the same keys.
type DaemonConfig struct {
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
}

// Values of the filtering key.
const (
	FilteringAddressPortDependent = "address-port-dependent"
	FilteringAddressDependent     = "address-dependent"
	FilteringEndpointIndependent  = "endpoint-independent"
)

// SwitchOptions returns the data path options the config asks for.
func (c DaemonConfig) SwitchOptions() vswitch.Options {
	return vswitch.Options{EndpointIndependentFiltering: c.Filtering == FilteringEndpointIndependent,
		AddressDependentFiltering: c.Filtering == FilteringAddressDependent}
}

// DefaultDaemonConfig returns the defaults of DESIGN.md.
func DefaultDaemonConfig() DaemonConfig {
	return DaemonConfig{StateDir: "/var/lib/roam", Socket: "/run/roam/roamd.sock", SocketGroup: "roam", LogLevel: "info", Ports: PortsDrivers, KeepFlows: true,
		Filtering: FilteringAddressPortDependent}
}

// ConfigKeys are the keys a config file may set, as the flags are named.
var ConfigKeys = []string{"state-dir", "socket", "socket-group", "uplink", "public-cidr", "public-ip", "upstream", "metrics", "log-level", "no-sync", "ports", "keep-flows", "filtering"}

// Values of the ports key.
const (
	PortsDrivers = "drivers"
	PortsMemory  = "memory"
)

// Set sets one key.
func (c *DaemonConfig) Set(key, value string) error {
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
		var c DaemonConfig
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
func (c DaemonConfig) Gateway() (Gateway, error) {
	var g Gateway
	if c.PublicCIDR != "" {
		p, err := netip.ParsePrefix(c.PublicCIDR)
		if err != nil {
			return g, invalid("public-cidr", c.PublicCIDR, "not a CIDR")
		}
		g.PublicCIDR = p
	}
	if c.PublicIP != "" {
		a, err := parseAddr("public-ip", c.PublicIP)
		if err != nil {
			return g, err
		}
		g.PublicIP = a
	}
	if c.Upstream != "" {
		if mac, err := net.ParseMAC(c.Upstream); err == nil {
			g.UpstreamMAC = mac
		} else if a, err := parseAddr("upstream", c.Upstream); err == nil {
			g.Upstream = a
		} else {
			return g, invalid("upstream", c.Upstream, "want the next hop's MAC or IPv4 address")
		}
	}
	if c.Uplink != "" {
		sp, err := parseSpec("uplink", c.Uplink, true)
		if err != nil {
			return g, err
		}
		g.Uplink = sp.String()
	}
	return g, validateGateway(g)
}

// MemoryPorts is the port factory of `ports = memory`: an in-memory taptest
// port named by its spec, for every spec (tests, and trying roamd out
// without root).
var MemoryPorts = PortFactoryFunc(func(spec string) (tap.Port, error) { return taptest.New(spec, 1024), nil })

// DriverPorts is the port factory of `ports = drivers` (the default): the
// real drivers of package tap. TAP devices are brought up (their MAC and MTU
// follow the record attached, see configureGuestsLocked).
var DriverPorts = PortFactoryFunc(func(spec string) (tap.Port, error) { return tap.Open(spec, tap.Options{Up: true}) })

// DaemonOptions are what the program hands to StartDaemon besides the config.
type DaemonOptions struct {
	Ports  PortFactory  // nil means MemoryPorts
	Logger *slog.Logger // nil means discard
	Level  *slog.LevelVar
}

// Daemon is a running roamd: store, switch, service, control socket and
// metrics endpoint.
type Daemon struct {
	Service *Service
	Switch  *vswitch.Switch
	API     *API

	mu      sync.Mutex
	cfg     DaemonConfig
	log     *slog.Logger
	level   *slog.LevelVar
	store   *BoltStore
	srv     *http.Server
	ln      net.Listener
	msrv    *http.Server
	errc    chan error
	stop    chan struct{}
	stopped sync.WaitGroup
}

// StartDaemon opens the store, restores and republishes the state, starts
// the switch and serves the control API (and metrics when configured).
func StartDaemon(cfg DaemonConfig, o DaemonOptions) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: o.Logger, level: o.Level, errc: make(chan error, 2), stop: make(chan struct{})}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.level != nil {
		l, err := ParseLevel(cfg.LogLevel)
		if err != nil {
			return nil, err
		}
		d.level.Set(l)
	}
	ports := o.Ports
	if ports == nil {
		ports = DriverPorts
		if cfg.Ports == PortsMemory {
			ports = MemoryPorts
		}
	}
	hub := NewCaptureHub()
	ports = hub.Wrap(ports)
	gw, err := cfg.Gateway()
	if err != nil {
		return nil, err
	}
	store, err := OpenBolt(cfg.StateDir, cfg.NoSync)
	if err != nil {
		return nil, err
	}
	d.store = store
	so := cfg.SwitchOptions()
	so.Logger = d.log.With("component", "switch")
	d.Switch = vswitch.New(so)
	metrics := NewMetrics()
	svc, err := Open(Options{Store: store, DataPath: d.Switch, Ports: ports, Gateway: gw,
		Logger: d.log.With("component", "control"), Observe: metrics.Observe})
	if err != nil {
		store.Close()
		return nil, err
	}
	d.Service = svc
	d.restoreFlows()
	d.Switch.Start()
	d.API = NewAPI(svc, SwitchInspector{Switch: d.Switch}, hub, d.log)
	gid := -1
	if cfg.SocketGroup != "" {
		gid = GroupID(cfg.SocketGroup)
		if gid < 0 {
			d.log.Info("socket group does not exist; only root may connect", "group", cfg.SocketGroup)
		}
	}
	ln, err := Listen(cfg.Socket, gid)
	if err != nil {
		d.closeData()
		return nil, err
	}
	d.ln = ln
	d.srv = NewServer(d.API, d.log)
	if cfg.Metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		if err := metrics.Register(reg, svc, d.Switch); err != nil {
			d.Shutdown(context.Background())
			return nil, err
		}
		mln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			d.Shutdown(context.Background())
			return nil, fmt.Errorf("metrics %s: %w", cfg.Metrics, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		d.msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := d.msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
		d.log.Info("metrics", "addr", mln.Addr().String())
	}
	d.stopped.Add(1)
	go d.expire()
	// The API serves last: a client that got an answer finds the daemon
	// wholly started (metrics included).
	go func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.errc <- fmt.Errorf("control API: %w", err)
		}
	}()
	d.log.Info("roamd ready", "socket", cfg.Socket, "state_dir", cfg.StateDir, "uplink", gw.Uplink,
		"public_cidr", cfg.PublicCIDR, "public_ip", cfg.PublicIP)
	return d, nil
}

// expire drives conntrack expiry once a second.
func (d *Daemon) expire() {
	defer d.stopped.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.Switch.Expire(1 << 16)
		}
	}
}

// Errors delivers a fatal serving error.
func (d *Daemon) Errors() <-chan error { return d.errc }

// Reload applies a new configuration (SIGHUP): the log level and the
// public side (pool, gateway address, upstream) change in place; the other
// keys need a restart and are reported.
func (d *Daemon) Reload(cfg DaemonConfig) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.cfg
	var restart []string
	for _, k := range []struct {
		name     string
		old, new string
	}{{"state-dir", old.StateDir, cfg.StateDir}, {"socket", old.Socket, cfg.Socket}, {"uplink", old.Uplink, cfg.Uplink},
		{"metrics", old.Metrics, cfg.Metrics}, {"socket-group", old.SocketGroup, cfg.SocketGroup}} {
		if k.old != k.new {
			restart = append(restart, k.name)
		}
	}
	level, err := ParseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	gw, err := cfg.Gateway()
	if err != nil {
		return err
	}
	gw.Uplink = d.Service.gw.Uplink
	if err := d.Service.SetGateway(gw); err != nil {
		return err
	}
	if d.level != nil {
		d.level.Set(level)
	}
	cfg.StateDir, cfg.Socket, cfg.Uplink, cfg.Metrics, cfg.SocketGroup = old.StateDir, old.Socket, old.Uplink, old.Metrics, old.SocketGroup
	d.cfg = cfg
	sort.Strings(restart)
	if len(restart) > 0 {
		d.log.Warn("reload: these keys change only at restart", "keys", strings.Join(restart, ","))
	}
	d.log.Info("reloaded", "log_level", cfg.LogLevel, "public_cidr", cfg.PublicCIDR, "public_ip", cfg.PublicIP, "upstream", cfg.Upstream)
	return nil
}

// stopServing stops the control API (waiting for requests in progress
// until ctx is done), the metrics endpoint and the expiry loop.
func (d *Daemon) stopServing(ctx context.Context) error {
	var first error
	if d.srv != nil {
		if err := d.srv.Shutdown(ctx); err != nil {
			first = err
		}
	}
	if d.ln != nil {
		d.ln.Close()
		os.Remove(d.cfg.Socket)
	}
	if d.msrv != nil {
		d.msrv.Shutdown(ctx)
	}
	close(d.stop)
	d.stopped.Wait()
	return first
}

// Shutdown stops serving (waiting for requests in progress until ctx is
// done), then closes the switch, the ports and the store. Every operation
// that returned was committed; nothing else is lost.
func (d *Daemon) Shutdown(ctx context.Context) error {
	first := d.stopServing(ctx)
	if err := d.closeData(); err != nil && first == nil {
		first = err
	}
	d.log.Info("roamd stopped")
	return first
}

func (d *Daemon) closeData() error {
	d.Service.Close()
	d.Switch.Close()
	return d.store.Close()
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
		return &Error{Code: CodeDataPath, Message: "the data path refused the new public side: " + err.Error(), cause: err}
	}
	s.last = cfg
	return nil
}
