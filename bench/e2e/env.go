package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Addresses shared by every arm. The public side uses 203.0.113.0/24
// (TEST-NET-3); the inside 10.0.0.0/24.
const (
	pubClientIP = "203.0.113.2"  // the outside client in the pub namespace
	pubGwIP     = "203.0.113.1"  // the gateway's own public address
	eipIP       = "203.0.113.10" // the public IP mapped 1:1 to vmA's record
	vmIP        = "10.0.0.10"    // vmA's private IP (and vmB's standby copy)
	vmBOwnIP    = "10.0.0.11"    // vmB's own IP where an arm cannot share one
	gwInIP      = "10.0.0.1"     // the subnet's gateway

	macPub   = "02:00:00:00:01:02"
	macGwPub = "02:00:00:00:01:01"
	macGwIn  = "02:00:00:00:00:01"
	macVMA   = "02:00:00:00:0a:0a"
	macVMB   = "02:00:00:00:0b:0b"

	portIperf = 5201
	portUDP   = 9000
	portConn  = 9100
	portSeq   = 9200
	portTCP   = 9300
)

// Env is one benchmark process's world: the namespace names (a prefix with
// the PID), a temp directory, the helper binary and every child process and
// namespace it created, so that Cleanup removes exactly those.
type Env struct {
	Prefix string // e.g. "rb1234-"
	Dir    string // temp dir for daemons' state, sockets and logs
	Self   string // absolute path of the roame2e binary (helpers)
	Log    io.Writer
	Debug  bool

	mu    sync.Mutex
	nss   []string
	procs []*Proc
}

// NewEnv makes the temp dir and names the namespaces after the PID.
func NewEnv(self string, log io.Writer) (*Env, error) {
	dir, err := os.MkdirTemp("", "roam-bench-e2e-")
	if err != nil {
		return nil, err
	}
	return &Env{Prefix: fmt.Sprintf("rb%d-", os.Getpid()), Dir: dir, Self: self, Log: log}, nil
}

// NS returns the full name of namespace short ("pub", "vma", ...).
func (e *Env) NS(short string) string { return e.Prefix + short }

func (e *Env) logf(format string, args ...any) {
	fmt.Fprintf(e.Log, "  "+format+"\n", args...)
}

// AddNS creates a namespace, brings its loopback up and remembers it.
func (e *Env) AddNS(short string) error {
	name := e.NS(short)
	if err := e.Run(nil, "ip", "netns", "add", name); err != nil {
		return err
	}
	e.mu.Lock()
	e.nss = append(e.nss, name)
	e.mu.Unlock()
	return e.Run(nil, "ip", "-n", name, "link", "set", "lo", "up")
}

// DelNamespaces deletes the namespaces this Env created.
func (e *Env) DelNamespaces() {
	e.mu.Lock()
	nss := e.nss
	e.nss = nil
	e.mu.Unlock()
	for _, ns := range nss {
		if err := e.Run(nil, "ip", "netns", "del", ns); err != nil {
			e.logf("cleanup: %v", err)
		}
	}
}

// Cleanup stops every child still running and deletes the namespaces, then
// the temp dir.
func (e *Env) Cleanup(keepDir bool) {
	e.StopAll()
	e.DelNamespaces()
	if !keepDir {
		os.RemoveAll(e.Dir)
	}
}

// Run runs a command to completion (at most 60 s) and returns an error with
// its output when it fails. ns, when not nil, is the short namespace name.
func (e *Env) Run(ns *string, name string, args ...string) error {
	_, err := e.Output(ns, name, args...)
	return err
}

// In is a convenience for the ns argument of Run and Output.
func In(short string) *string { return &short }

// Output runs a command and returns its standard output.
func (e *Env) Output(ns *string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return e.OutputCtx(ctx, ns, "", name, args...)
}

// OutputCtx runs a command under ctx with optional standard input.
func (e *Env) OutputCtx(ctx context.Context, ns *string, stdin string, name string, args ...string) (string, error) {
	argv := append([]string{name}, args...)
	if ns != nil {
		argv = append([]string{"ip", "netns", "exec", e.NS(*ns)}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 2 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if e.Debug {
		fmt.Fprintf(e.Log, "    $ %s\n", strings.Join(argv, " "))
	}
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()+" "+lastLine(out.String())))
	}
	return out.String(), nil
}

// Sh runs a shell script in a namespace (nil: the root namespace).
func (e *Env) Sh(ns *string, script string) error {
	return e.Run(ns, "sh", "-ec", script)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Proc is a child process started in the background.
type Proc struct {
	Name   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	stdin  io.WriteCloser
	done   chan struct{}
	err    error
	lines  chan string // stdout lines when started with Lines
}

// Start starts a background child (in namespace ns when not nil), with its
// output kept in memory. logFile, when set, receives stdout and stderr
// instead.
func (e *Env) Start(ns *string, logFile string, name string, args ...string) (*Proc, error) {
	return e.start(ns, nil, logFile, false, name, args...)
}

// StartEnv is Start with extra environment variables (a full environ).
func (e *Env) StartEnv(ns *string, env []string, logFile string, name string, args ...string) (*Proc, error) {
	return e.start(ns, env, logFile, false, name, args...)
}

// StartPiped starts a child whose standard input the caller writes and whose
// standard output it reads line by line (Proc.Line).
func (e *Env) StartPiped(ns *string, name string, args ...string) (*Proc, error) {
	return e.start(ns, nil, "", true, name, args...)
}

func (e *Env) start(ns *string, env []string, logFile string, piped bool, name string, args ...string) (*Proc, error) {
	argv := append([]string{name}, args...)
	if ns != nil {
		argv = append([]string{"ip", "netns", "exec", e.NS(*ns)}, argv...)
	}
	p := &Proc{Name: strings.Join(argv, " "), done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.Env = env
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		p.cmd.Stdout, p.cmd.Stderr = f, f
	} else {
		p.cmd.Stderr = &p.stderr
		if !piped {
			p.cmd.Stdout = &p.stdout
		}
	}
	var out io.ReadCloser
	if piped {
		var err error
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if out, err = p.cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		p.lines = make(chan string, 16)
	}
	if e.Debug {
		fmt.Fprintf(e.Log, "    & %s\n", p.Name)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	if piped {
		go func() {
			defer close(p.lines)
			buf := make([]byte, 0, 4096)
			tmp := make([]byte, 4096)
			for {
				n, err := out.Read(tmp)
				buf = append(buf, tmp[:n]...)
				for {
					i := bytes.IndexByte(buf, '\n')
					if i < 0 {
						break
					}
					p.lines <- string(buf[:i])
					buf = buf[i+1:]
				}
				if err != nil {
					return
				}
			}
		}()
	}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Send writes one line to a piped child's standard input.
func (p *Proc) Send(line string) error {
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

// Line waits at most d for the next line of a piped child's output.
func (p *Proc) Line(d time.Duration) (string, error) {
	select {
	case l, ok := <-p.lines:
		if !ok {
			<-p.done
			return "", fmt.Errorf("%s exited: %v: %s", p.Name, p.err, strings.TrimSpace(p.stderr.String()))
		}
		return l, nil
	case <-time.After(d):
		return "", fmt.Errorf("%s: no answer in %v", p.Name, d)
	}
}

// Wait waits at most d for the child to exit and returns its output.
func (p *Proc) Wait(d time.Duration) (string, error) {
	select {
	case <-p.done:
	case <-time.After(d):
		p.Stop()
		return p.stdout.String(), fmt.Errorf("%s: still running after %v, stopped", p.Name, d)
	}
	if p.err != nil {
		return p.stdout.String(), fmt.Errorf("%s: %v: %s", p.Name, p.err, strings.TrimSpace(p.stderr.String()))
	}
	return p.stdout.String(), nil
}

// Running reports whether the child has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM to this child (by its PID), then SIGKILL after 3 s.
func (p *Proc) Stop() {
	if !p.Running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Stderr returns what the child wrote on standard error so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// StopAll stops every child this Env started that still runs, newest first.
func (e *Env) StopAll() {
	e.mu.Lock()
	procs := e.procs
	e.procs = nil
	e.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
}

// Path returns a path inside the temp dir.
func (e *Env) Path(elem ...string) string {
	return filepath.Join(append([]string{e.Dir}, elem...)...)
}

// OutputCtxDefault runs a command with standard input and a 60 s limit.
func (e *Env) OutputCtxDefault(ns *string, stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return e.OutputCtx(ctx, ns, stdin, name, args...)
}
