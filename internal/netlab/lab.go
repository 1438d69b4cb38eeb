package netlab

import (
	"bytes"
	"context"
	"encoding/json"
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
	"syscall"
	"time"
)

// Config says where the binaries are and how to name what a Lab creates.
type Config struct {
	Roamd   string // path of the roamd binary
	Roamctl string // path of the roamctl binary
	// Prefix starts every namespace name; it should carry the PID so that
	// two runs never touch each other's namespaces. Empty: "rw<PID>-<N>-".
	Prefix string
	// Trace, when set, receives every command the Lab runs.
	Trace io.Writer
}

var worlds atomic.Int64

// Lab is a set of namespaces, one roamd and the roamctl that drives it.
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
// root and that the binaries exist.
func New(cfg Config) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	for _, b := range []string{cfg.Roamd, cfg.Roamctl} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("netlab: binary: %w", err)
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("rw%d-%d-", os.Getpid(), worlds.Add(1))
	}
	dir, err := os.MkdirTemp("", "roam-world-")
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

// Run runs a command to completion within 30 s, in namespace short ("" is
// the root namespace), and returns its standard output; a failure carries
// the command line and its standard error.
func (w *Lab) Run(short string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return w.RunCtx(ctx, short, name, args...)
}

// RunCtx is Run under ctx.
func (w *Lab) RunCtx(ctx context.Context, short string, name string, args ...string) (string, error) {
	argv := w.argv(short, name, args)
	w.trace("$ %s", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 2 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()+" "+out.String()))
	}
	return out.String(), nil
}

func (w *Lab) argv(short, name string, args []string) []string {
	argv := append([]string{name}, args...)
	if short != "" {
		argv = append([]string{"ip", "netns", "exec", w.NS(short)}, argv...)
	}
	return argv
}

// Proc is a child process running in the background.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	out  *os.File // where stdout and stderr go; nil: discarded
	done chan struct{}
	err  error
}

// Start starts name in namespace short in the background; its standard
// output and error go to logFile when not empty.
func (w *Lab) Start(short, logFile, name string, args ...string) (*Proc, error) {
	if w.closed.Load() {
		return nil, errors.New("netlab: closed")
	}
	argv := w.argv(short, name, args)
	w.trace("& %s", strings.Join(argv, " "))
	p := &Proc{Name: strings.Join(argv, " "), done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return nil, err
		}
		p.out = f
		p.cmd.Stdout, p.cmd.Stderr = f, f
	}
	errc := make(chan error, 1)
	select {
	case w.launch <- func() { errc <- p.cmd.Start() }:
	case <-w.done:
		return nil, errors.New("netlab: closed")
	}
	if err := <-errc; err != nil {
		if p.out != nil {
			p.out.Close()
		}
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	go func() {
		p.err = p.cmd.Wait()
		if p.out != nil {
			p.out.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM to the process (by its PID), then SIGKILL after 5 s,
// and waits for it.
func (p *Proc) Stop() error {
	if p.Running() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	return p.err
}

// Close stops every process the Lab started (newest first), deletes its
// namespaces and its temp dir (kept when keepDir, e.g. for roamd's log
// after a failure), and ends the launcher thread. It returns the first
// error met; it carries on after one.
func (w *Lab) Close(keepDir bool) error {
	if w.closed.Swap(true) {
		return nil
	}
	w.mu.Lock()
	procs, nss := w.procs, w.nss
	w.procs, w.nss = nil, nil
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
	close(w.done)
	if !keepDir {
		if err := os.RemoveAll(w.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RoamdLog returns what roamd wrote so far (its structured log).
func (w *Lab) RoamdLog() string {
	b, _ := os.ReadFile(filepath.Join(w.Dir, "roamd.log"))
	return string(b)
}

// Roamd returns the running roamd, or nil.
func (w *Lab) Roamd() *Proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.roamd
}

// StartRoamd starts roamd with its state and socket in the Lab's dir
// and the given flags (e.g. --uplink), and waits for its socket to answer.
func (w *Lab) StartRoamd(flags ...string) error {
	args := append([]string{
		"--state-dir", filepath.Join(w.Dir, "state"), "--socket", w.Socket,
		"--socket-group", "", "--no-sync",
	}, flags...)
	p, err := w.Start("", filepath.Join(w.Dir, "roamd.log"), w.cfg.Roamd, args...)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.roamd = p
	w.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if !p.Running() {
			return fmt.Errorf("roamd exited: %v: %s", p.err, strings.TrimSpace(w.RoamdLog()))
		}
		if _, err := w.Ctl("subnet", "list"); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("roamd does not answer on %s: %w; log: %s", w.Socket, err, strings.TrimSpace(w.RoamdLog()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CtlError is a failed roamctl command with the error object it printed.
type CtlError struct {
	Args    []string
	Code    string
	Message string
	Err     error // the exit status or a decoding failure
}

func (e *CtlError) Error() string {
	return fmt.Sprintf("roamctl %s: %s: %s (%v)", strings.Join(e.Args, " "), e.Code, e.Message, e.Err)
}

// Ctl runs roamctl --output json with args against the Lab's roamd and
// returns what it printed (the JSON object or list). A non-zero exit is a
// *CtlError with the code and message roamctl printed.
func (w *Lab) Ctl(args ...string) ([]byte, error) {
	full := append([]string{"--socket", w.Socket, "--output", "json"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w.trace("$ roamctl %s", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, w.cfg.Roamctl, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		var body struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(out.Bytes(), &body)
		msg := body.Error.Message
		if msg == "" {
			msg = strings.TrimSpace(errb.String() + " " + out.String())
		}
		return nil, &CtlError{Args: args, Code: body.Error.Code, Message: msg, Err: err}
	}
	return out.Bytes(), nil
}

// CtlInto runs Ctl and decodes its JSON into v.
func (w *Lab) CtlInto(v any, args ...string) error {
	out, err := w.Ctl(args...)
	if err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(out, v); err != nil {
		return &CtlError{Args: args, Code: "BadJSON", Message: string(firstN(out, 300)), Err: err}
	}
	return nil
}

// CtlID runs Ctl and returns the "id" of the object it printed.
func (w *Lab) CtlID(args ...string) (string, error) {
	var obj struct {
		ID string `json:"id"`
	}
	if err := w.CtlInto(&obj, args...); err != nil {
		return "", err
	}
	if obj.ID == "" {
		return "", &CtlError{Args: args, Code: "NoID", Message: "the printed object has no id"}
	}
	return obj.ID, nil
}

func firstN(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
