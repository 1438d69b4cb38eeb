package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"roam/internal/daemon"
)

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "roamd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	def := daemon.DefaultConfig()
	fs := flag.NewFlagSet("roamd", flag.ContinueOnError)
	configFile := fs.String("config", "", "config file with the same keys as the flags (key = value)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	vals := map[string]*string{}
	for _, f := range []struct{ key, def, usage string }{
		{"state-dir", def.StateDir, "directory of the embedded store"},
		{"socket", def.Socket, "control socket"},
		{"socket-group", def.SocketGroup, "group allowed to connect to the socket (ignored when it does not exist)"},
		{"uplink", "", "uplink port: tap:IFNAME[@NETNS], netdev:IFNAME or tun:IFNAME[@NETNS]"},
		{"public-cidr", "", "public pool that public IPs are allocated from"},
		{"public-ip", "", "the gateway's own public address (PAT)"},
		{"upstream", "", "next hop on the uplink: an IP (resolved with ARP) or a MAC (used as is)"},
		{"metrics", "", "serve Prometheus metrics on this address (host:port)"},
		{"log-level", def.LogLevel, "debug, info, warn or error"},
		{"ports", def.Ports, "port drivers: drivers (real TAP, AF_PACKET, stream and TUN ports) or memory (in-memory twins, for tests)"},
		{"mss-clamp", "0", "lower the MSS option of TCP SYNs roam forwards to at most this many bytes (0 = off)"},
		{"icmp-rate", fmt.Sprint(def.ICMPRate), "ICMP errors per second one record, or one source on the uplink, may cause (bursts of twice as many; fragmentation-needed counts apart)"},
		{"store", def.Store, "where the objects live: bolt (state.db in --state-dir, this host only) or etcd (shared by the roamds of a cluster)"},
		{"etcd-endpoints", "", "with --store etcd: etcd client URLs, URL[,URL...] (http://host:port)"},
		{"etcd-prefix", def.EtcdPrefix, "with --store etcd: the prefix of every key of the store"},
		{"filtering", def.Filtering, "PAT filtering (RFC 4787 REQ-8): address-port-dependent (only the remote endpoints a mapping sent to), address-dependent (any port of the remote addresses it sent to) or endpoint-independent (any remote)"},
	} {
		vals[f.key] = fs.String(f.key, f.def, f.usage)
	}
	keepFlows := fs.Bool("keep-flows", def.KeepFlows, "on SIGTERM or SIGINT keep the TAP devices and save every flow for the next roamd (graceful restart); false removes them")
	noSync := fs.Bool("no-sync", false, "do not fsync the store on commit (tests and benchmarks only: a power loss may lose or corrupt state)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	load := func() (daemon.Config, error) {
		cfg := daemon.DefaultConfig()
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if *configFile != "" {
			kvs, err := daemon.ReadConfigFile(*configFile)
			if err != nil {
				return cfg, err
			}
			for _, kv := range kvs {
				if !set[kv[0]] {
					cfg.Set(kv[0], kv[1])
				}
			}
		}
		for key, v := range vals {
			if set[key] {
				if err := cfg.Set(key, *v); err != nil {
					return cfg, err
				}
			}
		}
		if set["keep-flows"] {
			cfg.KeepFlows = *keepFlows
		}
		if set["no-sync"] {
			cfg.NoSync = *noSync
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	var h slog.Handler
	if *logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	} else {
		h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(h)
	// Signals are caught before the daemon serves: a client that saw it
	// ready may signal it at once.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	d, err := daemon.Start(cfg, daemon.Options{Logger: log, Level: level})
	if err != nil {
		return err
	}
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				next, err := load()
				if err == nil {
					err = d.Reload(next)
				}
				if err != nil {
					log.Error("reload refused", "err", err)
				}
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if cfg.KeepFlows {
				log.Info("handing over: devices and flows kept for the next roamd", "signal", s.String())
				return d.Handover(ctx)
			}
			log.Info("shutting down", "signal", s.String())
			return d.Shutdown(ctx)
		case err := <-d.Errors():
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d.Shutdown(ctx)
			return err
		}
	}
}
