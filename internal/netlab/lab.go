package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config says where the binaries are and how to name what a Lab creates.
type Config struct {
	Roamd   string // path of the roamd binary (needed by StartRoamd only)
	Roamctl string // path of the roamctl binary (needed by Ctl only)
	// Prefix starts every namespace name; it should carry the PID so that
	// two runs never touch each other's namespaces. Empty:
	// UniquePrefix("rw"), e.g. "rw1234-1-".
	Prefix string
	// Trace, when set, receives every command the Lab runs.
	Trace io.Writer
	// Timeout bounds each command Run runs (default 30 s).
	Timeout time.Duration
	// TempPattern names the temp dir (os.MkdirTemp; default "roam-lab-").
	TempPattern string
}

var prefixes atomic.Int64

// UniquePrefix returns tag, this process's PID and a number never returned
// before by this process, then a dash: "rw1234-1-". Names made with it
// never collide with another run's, nor with another Lab of this run.
func UniquePrefix(tag string) string {
	return fmt.Sprintf("%s%d-%d-", tag, os.Getpid(), prefixes.Add(1))
}

// Lab is a set of namespaces and the processes started in them: at most
// one roamd, driven by roamctl, and any helper.
type Lab struct {
	cfg    Config
	Dir    string // temp dir: roamd's state, socket and log
	Socket string // roamd's control socket

	mu    sync.Mutex
	nss   []string
	procs []*Proc
	roamd *Proc

	// launch runs exec.Cmd.Start on one OS thread that lives as long as
	// the Lab: children get SIGKILL (Pdeathsig) when that thread ends,
	// which is when this process ends, however it ends.
	launch chan func()
	done   chan struct{}
	closed atomic.Bool
}

// New makes the temp dir and the launcher thread. It checks that it runs as
// root and that the binaries named in cfg exist.
func New(cfg Config) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	for _, b := range []string{cfg.Roamd, cfg.Roamctl} {
		if b == "" {
			continue
		}
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("netlab: binary: %w", err)
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = UniquePrefix("rw")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.TempPattern == "" {
		cfg.TempPattern = "roam-lab-"
	}
	dir, err := os.MkdirTemp("", cfg.TempPattern)
	if err != nil {
		return nil, err
	}
	w := &Lab{cfg: cfg, Dir: dir, Socket: filepath.Join(dir, "roamd.sock"), launch: make(chan func()), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the Lab
		for {
			select {
			case fn := <-w.launch:
				fn()
			case <-w.done:
				return
			}
		}
	}()
	return w, nil
}

// ErrNotRoot is returned by New when the process is not root.
var ErrNotRoot = errors.New("netlab: needs root (network namespaces, TAP devices, TCP_REPAIR)")

// Prefix returns the namespace prefix.
func (w *Lab) Prefix() string { return w.cfg.Prefix }

// NS returns the full name of the namespace called short ("pub", "vma").
func (w *Lab) NS(short string) string { return w.cfg.Prefix + short }

// Path returns a path inside the temp dir.
func (w *Lab) Path(elem ...string) string {
	return filepath.Join(append([]string{w.Dir}, elem...)...)
}

// AddNS creates namespace short with its loopback up.
func (w *Lab) AddNS(short string) error {
	name := w.NS(short)
	if _, err := w.Run("", "ip", "netns", "add", name); err != nil {
		return err
	}
	w.mu.Lock()
	w.nss = append(w.nss, name)
	w.mu.Unlock()
	// No IPv6: roam switches IPv4, and the guests' router solicitations
	// and DAD would only add drops to its counters.
	_, err := w.Run(short, "sh", "-ec", "ip link set lo up; sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
	return err
}

func (w *Lab) trace(format string, args ...any) {
	if w.cfg.Trace != nil {
		fmt.Fprintf(w.cfg.Trace, format+"\n", args...)
	}
}

// Run runs a command to completion within the Lab's timeout (30 s unless
// configured), in namespace short ("" is the root namespace), and returns
// its standard output; a failure carries the command line, its standard
// error and the last line of its output.
func (w *Lab) Run(short string, name string, args ...string) (string, error) {
	return w.RunInput(short, "", name, args...)
}

// RunInput is Run with stdin as the command's standard input.
func (w *Lab) RunInput(short, stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	return w.RunCtx(ctx, short, stdin, name, args...)
}

// RunCtx is RunInput under ctx.
func (w *Lab) RunCtx(ctx context.Context, short, stdin string, name string, args ...string) (string, error) {
	argv := w.argv(short, name, args)
	w.trace("$ %s", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 2 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()+" "+LastLine(out.String())))
	}
	return out.String(), nil
}

// Sh runs a shell script in namespace short ("": the root namespace).
func (w *Lab) Sh(short, script string) error {
	_, err := w.Run(short, "sh", "-ec", script)
	return err
}

// LastLine returns the last non-empty line of s.
func LastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func (w *Lab) argv(short, name string, args []string) []string {
	argv := append([]string{name}, args...)
	if short != "" {
		argv = append([]string{"ip", "netns", "exec", w.NS(short)}, argv...)
	}
	return argv
}

// Reset stops every process the Lab started (newest first) and deletes its
// namespaces, keeping the temp dir: the Lab can build again with the same
// names. It returns the first errors met; it carries on after one.
func (w *Lab) Reset() error {
	w.mu.Lock()
	procs, nss := w.procs, w.nss
	w.procs, w.nss, w.roamd = nil, nil, nil
	w.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	var errs []error
	for _, ns := range nss {
		if _, err := w.Run("", "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close does what Reset does, then deletes the temp dir (kept when
// keepDir, e.g. for roamd's log after a failure) and ends the launcher
// thread. A second Close does nothing.
func (w *Lab) Close(keepDir bool) error {
	if w.closed.Swap(true) {
		return nil
	}
	err := w.Reset()
	close(w.done)
	if !keepDir {
		if rerr := os.RemoveAll(w.Dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}
