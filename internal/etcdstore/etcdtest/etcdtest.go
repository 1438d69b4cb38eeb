// Package etcdtest runs a real etcd server (Debian's etcd-server package,
// which scripts/deps.sh installs) for tests and demos: one member on free
// loopback ports with its own data directory, which a test can stop, kill
// and start again on the same data.
package etcdtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Package is the Debian package that has the etcd binary.
const Package = "etcd-server"

// Options are Run's options; the zero value runs etcd from PATH on
// 127.0.0.1.
type Options struct {
	Bin  string // the etcd binary; "": "etcd" from PATH
	Dir  string // data directory; "": a new temporary one, removed by Close
	Host string // listen address; "": 127.0.0.1
	// Exec, when not empty, runs etcd under it (e.g. ip netns exec NS).
	Exec []string
	// Args are more etcd flags (e.g. --unsafe-no-fsync).
	Args []string
}

// Server is one running (or stopped) etcd member.
type Server struct {
	Endpoint string // client URL, http://host:port
	Dir      string // data directory

	argv   []string
	ownDir bool
	log    string // etcd's stdout and stderr

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Missing says why etcd cannot run here ("" when it can), after
// installing Package when it is absent and this process is root.
func Missing() string {
	installOnce.Do(func() { installMissing = install() })
	return installMissing
}

var (
	installOnce    sync.Once
	installMissing string
)

func install() string {
	if _, err := exec.LookPath("etcd"); err == nil {
		return ""
	}
	if os.Geteuid() != 0 {
		return "etcd is missing and this process is not root to install " + Package + " (scripts/deps.sh installs it)"
	}
	get := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v: %s", strings.Join(args, " "), err, lastLines(string(out), 5))
		}
		return nil
	}
	err := get("install", "-y", "-qq", "--no-install-recommends", Package)
	if err != nil {
		if err = get("update", "-qq"); err == nil {
			err = get("install", "-y", "-qq", "--no-install-recommends", Package)
		}
	}
	if err != nil {
		return "etcd is missing and installing " + Package + " failed: " + err.Error()
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		return Package + " is installed but etcd is not in PATH"
	}
	return ""
}

// Start runs etcd for t: it skips t when etcd is missing and cannot be
// installed, fails it when etcd does not start, and closes the server
// (stopping it and removing its data) when t ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Bin == "" {
		if why := Missing(); why != "" {
			t.Skip(why)
		}
	}
	s, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("etcdtest: %v", err)
		}
	})
	return s
}

// Run starts an etcd member as o says and waits until it is healthy. The
// caller closes it.
func Run(o Options) (*Server, error) {
	if o.Bin == "" {
		o.Bin = "etcd"
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	s := &Server{Dir: o.Dir}
	if s.Dir == "" {
		d, err := os.MkdirTemp("", "etcdtest-")
		if err != nil {
			return nil, fmt.Errorf("etcdtest: %w", err)
		}
		s.Dir, s.ownDir = d, true
	}
	ports, err := freePorts(o.Host, 2)
	if err != nil {
		s.removeDir()
		return nil, err
	}
	hostPort := func(p int) string { return "http://" + net.JoinHostPort(o.Host, fmt.Sprint(p)) }
	s.Endpoint = hostPort(ports[0])
	peer := hostPort(ports[1])
	s.log = filepath.Join(s.Dir, "etcd.log")
	s.argv = append(append([]string(nil), o.Exec...), o.Bin,
		"--name", "roamtest",
		"--data-dir", filepath.Join(s.Dir, "data"),
		"--listen-client-urls", s.Endpoint, "--advertise-client-urls", s.Endpoint,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "roamtest="+peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "warn",
		// roam's commits write every object they touch in one transaction.
		"--max-txn-ops", "100000", "--max-request-bytes", fmt.Sprint(32<<20))
	s.argv = append(s.argv, o.Args...)
	if err := s.Restart(); err != nil {
		s.removeDir()
		return nil, err
	}
	return s, nil
}

// freePorts returns n distinct free TCP ports on host.
func freePorts(host string, n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("etcdtest: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Restart starts the stopped member again, on the same ports and data,
// and waits until it is healthy (up to 30 s).
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("etcdtest: already running")
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("etcdtest: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: start %s: %w", s.argv[0], err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("etcdtest: etcd exited at start (%v): %s", cmd.ProcessState, s.logTail())
		default:
		}
		if healthy(s.Endpoint) {
			return nil
		}
		if time.Now().After(deadline) {
			s.stopLocked(syscall.SIGKILL)
			return fmt.Errorf("etcdtest: etcd at %s not healthy after 30 s: %s", s.Endpoint, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func healthy(endpoint string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(endpoint + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(b), `"health":"true"`)
}

// Stop stops the member (SIGTERM, then SIGKILL after 10 s) and keeps its
// data for Restart.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGTERM)
}

// Kill kills the member at once (SIGKILL), as a crash would, keeping its
// data for Restart.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGKILL)
}

func (s *Server) stopLocked(sig syscall.Signal) error {
	if s.cmd == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("etcdtest: signal etcd: %w", err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	return nil
}

// Close stops the member and removes its data directory when Run made it.
func (s *Server) Close() error {
	err := s.Stop()
	s.removeDir()
	return err
}

func (s *Server) removeDir() {
	if s.ownDir {
		os.RemoveAll(s.Dir)
	}
}

// Log returns the end of what etcd printed.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	return lastLines(string(b), 10)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
