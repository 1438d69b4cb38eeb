package netlab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process running in the background, started by a Lab
// and stopped by its PID.
type Proc struct {
	Name   string
	cmd    *exec.Cmd
	out    *os.File  // where stdout and stderr go when logged to a file
	stdout lockedBuf // otherwise, what it printed on standard output
	stderr lockedBuf // and on standard error
	stdin  io.WriteCloser
	lines  chan string // stdout lines of a piped child
	done   chan struct{}
	err    error
}

// lockedBuf is a bytes.Buffer that the child's copier writes while the
// test reads it.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartOpts are Start's options beyond the command.
type StartOpts struct {
	NS  string   // short namespace name; "": the root namespace
	Log string   // file for stdout and stderr; "": kept in memory (Output, Stderr)
	Env []string // the child's environment; nil: this process's
	// Piped gives the child a standard input (Send) and hands its
	// standard output over line by line (Line) instead of keeping it.
	Piped bool
}

// Start starts name in namespace short in the background; its standard
// output and error go to logFile when not empty, else to memory.
func (w *Lab) Start(short, logFile, name string, args ...string) (*Proc, error) {
	return w.StartWith(StartOpts{NS: short, Log: logFile}, name, args...)
}

// StartPiped starts a child whose standard input the caller writes (Send)
// and whose standard output it reads line by line (Line).
func (w *Lab) StartPiped(short, name string, args ...string) (*Proc, error) {
	return w.StartWith(StartOpts{NS: short, Piped: true}, name, args...)
}

// StartWith starts name with args as o says. The child is killed if this
// process dies (Pdeathsig), and Reset or Close stop it.
func (w *Lab) StartWith(o StartOpts, name string, args ...string) (*Proc, error) {
	if w.closed.Load() {
		return nil, errors.New("netlab: closed")
	}
	argv := w.argv(o.NS, name, args)
	w.trace("& %s", strings.Join(argv, " "))
	p := &Proc{Name: strings.Join(argv, " "), done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.Env = o.Env
	switch {
	case o.Log != "":
		f, err := os.Create(o.Log)
		if err != nil {
			return nil, err
		}
		p.out = f
		p.cmd.Stdout, p.cmd.Stderr = f, f
	default:
		p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	}
	var stdout io.ReadCloser
	if o.Piped {
		var err error
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			return nil, err
		}
		p.cmd.Stdout = nil
		if stdout, err = p.cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		p.lines = make(chan string, 1024)
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
	var lines sync.WaitGroup
	if stdout != nil {
		lines.Add(1)
		go func() {
			defer lines.Done()
			defer close(p.lines)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
		}()
	}
	go func() {
		lines.Wait() // Wait closes the pipe: read it to the end first
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

// Err returns how the process ended (nil while it runs).
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

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

// Wait waits at most d for the process to exit and returns what it printed
// on standard output; one still running after d is stopped.
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

// Stderr returns what the process wrote on standard error so far (when not
// logged to a file).
func (p *Proc) Stderr() string { return p.stderr.String() }

// Send writes one line to a piped child's standard input.
func (p *Proc) Send(line string) error {
	if p.stdin == nil {
		return fmt.Errorf("%s: not piped", p.Name)
	}
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

// Line waits at most d for the next line of a piped child's output.
func (p *Proc) Line(d time.Duration) (string, error) {
	if p.lines == nil {
		return "", fmt.Errorf("%s: not piped", p.Name)
	}
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
