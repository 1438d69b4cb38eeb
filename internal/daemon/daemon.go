package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"roam/control"
	"roam/internal/apiserver"
	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/memport"
)

// MemoryPorts is the port factory of `ports = memory`: an in-memory memport
// port named by its spec, for every spec (tests, and trying roamd out
// without root).
var MemoryPorts = control.PortFactoryFunc(func(spec string) (tap.Port, error) { return memport.New(spec, 1024), nil })

// DriverPorts is the port factory of `ports = drivers` (the default): the
// real drivers of package tap. TAP devices are brought up (their MAC and MTU
// follow the record attached, see configureGuestsLocked).
var DriverPorts = control.PortFactoryFunc(func(spec string) (tap.Port, error) { return tap.Open(spec, tap.Options{Up: true}) })

// Options are what the program hands to Start besides the config.
type Options struct {
	Ports  control.PortFactory // nil means MemoryPorts
	Logger *slog.Logger        // nil means discard
	Level  *slog.LevelVar
}

// Daemon is a running roamd: store, switch, service, control socket and
// metrics endpoint.
type Daemon struct {
	Service *control.Service
	Switch  *vswitch.Switch
	API     *apiserver.API

	mu      sync.Mutex
	cfg     Config
	log     *slog.Logger
	level   *slog.LevelVar
	store   control.Store
	srv     *http.Server
	ln      net.Listener
	msrv    *http.Server
	maddr   string
	errc    chan error
	stop    chan struct{}
	stopped sync.WaitGroup
}

// Start opens the store, restores and republishes the state, starts
// the switch and serves the control API (and metrics when configured).
func Start(cfg Config, o Options) (*Daemon, error) {
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
	if err := cfg.CheckStore(); err != nil {
		return nil, err
	}
	store, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	d.store = store
	so := cfg.SwitchOptions()
	so.Logger = d.log.With("component", "switch")
	d.Switch = vswitch.New(so)
	metrics := NewMetrics()
	svc, err := control.Open(control.Options{Store: store, DataPath: d.Switch, Ports: ports, Gateway: gw,
		Logger: d.log.With("component", "control"), Observe: metrics.Observe})
	if err != nil {
		store.Close()
		return nil, err
	}
	d.Service = svc
	d.restoreFlows()
	d.restoreCounters()
	d.Switch.Start()
	d.API = apiserver.New(svc, SwitchInspector{Switch: d.Switch}, hub, d.log)
	gid := -1
	if cfg.SocketGroup != "" {
		gid = apiserver.GroupID(cfg.SocketGroup)
		if gid < 0 {
			d.log.Info("socket group does not exist; only root may connect", "group", cfg.SocketGroup)
		}
	}
	ln, err := apiserver.Listen(cfg.Socket, gid)
	if err != nil {
		d.closeData()
		return nil, err
	}
	d.ln = ln
	// The uid roamd runs as administers it, as root does: a user trying
	// roamd --ports memory without root manages what they started.
	d.srv = apiserver.NewServer(d.API, d.log, uint32(os.Geteuid()))
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
		d.maddr = mln.Addr().String()
		d.log.Info("metrics", "addr", d.maddr)
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
		"public_cidr", cfg.PublicCIDR, "public_ip", cfg.PublicIP, "admin_uid", os.Geteuid())
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

// MetricsAddr returns the address the metrics endpoint listens on ("" when
// there is none): with metrics = 127.0.0.1:0, the port the kernel chose.
func (d *Daemon) MetricsAddr() string { return d.maddr }

// openStore opens the store the config names: bolt in the state
// directory, or etcd.
func openStore(cfg Config) (control.Store, error) {
	if cfg.Store == StoreEtcd {
		return control.OpenEtcd(cfg.EtcdEndpoints, cfg.EtcdPrefix)
	}
	return control.OpenBolt(cfg.StateDir, cfg.NoSync)
}

// Errors delivers a fatal serving error.
func (d *Daemon) Errors() <-chan error { return d.errc }

// Reload applies a new configuration (SIGHUP): the log level and the
// public side (pool, gateway address, upstream) change in place; the other
// keys need a restart and are reported.
func (d *Daemon) Reload(cfg Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.cfg
	var restart []string
	for _, k := range []struct {
		name     string
		old, new string
	}{{"state-dir", old.StateDir, cfg.StateDir}, {"socket", old.Socket, cfg.Socket}, {"uplink", old.Uplink, cfg.Uplink},
		{"metrics", old.Metrics, cfg.Metrics}, {"socket-group", old.SocketGroup, cfg.SocketGroup},
		{"mss-clamp", fmt.Sprint(old.MSSClamp), fmt.Sprint(cfg.MSSClamp)}, {"icmp-rate", fmt.Sprint(old.ICMPRate), fmt.Sprint(cfg.ICMPRate)},
		{"store", old.Store, cfg.Store}, {"etcd-endpoints", strings.Join(old.EtcdEndpoints, ","), strings.Join(cfg.EtcdEndpoints, ",")}, {"etcd-prefix", old.EtcdPrefix, cfg.EtcdPrefix}} {
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
	gw.Uplink = d.Service.Gateway().Uplink
	if err := d.Service.SetGateway(gw); err != nil {
		return err
	}
	if d.level != nil {
		d.level.Set(level)
	}
	cfg.StateDir, cfg.Socket, cfg.Uplink, cfg.Metrics, cfg.SocketGroup = old.StateDir, old.Socket, old.Uplink, old.Metrics, old.SocketGroup
	cfg.MSSClamp = old.MSSClamp
	cfg.Store, cfg.EtcdEndpoints, cfg.EtcdPrefix = old.Store, old.EtcdEndpoints, old.EtcdPrefix
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
