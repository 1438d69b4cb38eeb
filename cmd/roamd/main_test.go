package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"roam/api"
	"roam/internal/etcdstore/etcdtest"
)

var roamd string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "roamd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	roamd = filepath.Join(dir, "roamd")
	if out, err := exec.Command("go", "build", "-o", roamd, "roam/cmd/roamd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build roamd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDaemonLifecycle starts roamd from a config file (a flag overriding
// one key), checks its metrics, reloads it with SIGHUP and stops it with
// SIGTERM.
func TestDaemonLifecycle(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "roamd.conf")
	sock := filepath.Join(dir, "roamd.sock")
	write := func(level, publicIP string) {
		text := fmt.Sprintf("# test\nstate-dir = %s\nsocket = %s\nsocket-group = \"\"\npublic-cidr = 198.51.100.0/24\npublic-ip = %s\nlog-level = %s\nuplink = tap:up0\nmetrics = 127.0.0.1:0\nports = memory\n",
			filepath.Join(dir, "state"), sock, publicIP, level)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("info", "198.51.100.1")
	var logs syncBuffer
	cmd := exec.Command(roamd, "--config", conf, "--public-ip", "198.51.100.9")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	c := api.NewClient(sock)
	defer c.Close()
	if err := c.WaitReady(context.Background(), 10*time.Second); err != nil {
		t.Fatalf("not ready: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "public_ip=198.51.100.9") {
		t.Errorf("the --public-ip flag did not win over the file:\n%s", logs.String())
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("got socket %v %v, want mode 660", fi, err)
	}

	t.Run("metrics", func(t *testing.T) {
		var sn api.Subnet
		if err := c.Do(context.Background(), "POST", "/v1/subnets", api.CreateSubnetInput{CIDR: "10.0.0.0/24"}, &sn); err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`msg=metrics addr=(\S+)`).FindStringSubmatch(logs.String())
		if m == nil {
			t.Fatalf("no metrics address in the log:\n%s", logs.String())
		}
		resp, err := http.Get("http://" + m[1] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`roam_operations_total{operation="CreateSubnet",result="ok"} 1`, `roam_objects{kind="subnet"} 1`,
			"roam_conntrack_limit", "roam_operation_duration_seconds_bucket", `roam_nat_ports_in_use{proto="tcp",public_ip="198.51.100.9"}`,
			`roam_icmp_errors_total{result="rate_limited"} 0`} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})

	t.Run("sighup reloads", func(t *testing.T) {
		write("debug", "198.51.100.1") // the flag still wins for public-ip
		cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the reload", func() bool { return strings.Contains(logs.String(), "msg=reloaded log_level=debug") })
		var sn []api.Subnet
		c.Do(context.Background(), "GET", "/v1/subnets", nil, &sn)
		write("loud", "198.51.100.1")
		cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the refused reload", func() bool { return strings.Contains(logs.String(), "reload refused") })
		if err := c.Do(context.Background(), "GET", "/v1/subnets", nil, &sn); err != nil {
			t.Errorf("roamd stopped serving after a refused reload: %v", err)
		}
	})

	t.Run("sigterm stops cleanly", func(t *testing.T) {
		cmd.Process.Signal(syscall.SIGTERM)
		err := cmd.Wait()
		if err != nil {
			t.Fatalf("got %v, want a clean exit\n%s", err, logs.String())
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("socket still there after shutdown: %v", err)
		}
		if !strings.Contains(logs.String(), "roamd stopped") {
			t.Errorf("no shutdown message in the log")
		}
	})
}

// TestDaemonRefusesBadConfig: bad flags and files stop roamd with a clear
// message and status 1.
func TestDaemonRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("colour = red\n"), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown config key", []string{"--config", bad}, "colour"},
		{"missing config", []string{"--config", filepath.Join(dir, "none.conf")}, "none.conf"},
		{"bad public cidr", []string{"--state-dir", dir, "--socket", filepath.Join(dir, "s"), "--public-cidr", "nope"}, "public-cidr"},
		{"bad uplink", []string{"--state-dir", dir, "--socket", filepath.Join(dir, "s"), "--uplink", "stream:/x"}, "uplink"},
		{"bad log level", []string{"--state-dir", dir, "--socket", filepath.Join(dir, "s"), "--log-level", "loud"}, "log-level"},
		{"stray argument", []string{"extra"}, "extra"},
		{"unknown store", []string{"--state-dir", dir, "--socket", filepath.Join(dir, "s"), "--store", "redis"}, "store"},
		{"etcd without endpoints", []string{"--state-dir", dir, "--socket", filepath.Join(dir, "s"), "--store", "etcd"}, "etcd-endpoints"},
		{"bad etcd endpoint", []string{"--state-dir", dir, "--socket", filepath.Join(dir, "s"), "--store", "etcd", "--etcd-endpoints", "localhost"}, "etcd-endpoints"},
		{"etcd unreachable", []string{"--state-dir", dir, "--socket", filepath.Join(dir, "s"), "--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1"}, "etcd open at http://127.0.0.1:1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(roamd, tc.args...).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
				t.Errorf("got %v %q, want exit 1 mentioning %q", err, out, tc.want)
			}
		})
	}
}

// TestDaemonEtcdStore runs two roamds on one etcd (--store etcd), as two
// hosts: what one is told, the other serves; a restarted roamd finds it
// all again.
func TestDaemonEtcdStore(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	dir := t.TempDir()
	start := func(name string) (*exec.Cmd, *api.Client, *syncBuffer) {
		sock := filepath.Join(dir, name+".sock")
		var logs syncBuffer
		cmd := exec.Command(roamd, "--store", "etcd", "--etcd-endpoints", srv.Endpoint, "--etcd-prefix", "/roamd-test/",
			"--state-dir", filepath.Join(dir, name), "--socket", sock, "--socket-group", "", "--ports", "memory",
			"--public-cidr", "198.51.100.0/24", "--public-ip", "198.51.100.1", "--uplink", "tap:up-"+name, "--keep-flows=false")
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		c := api.NewClient(sock)
		t.Cleanup(func() { c.Close() })
		if err := c.WaitReady(context.Background(), 10*time.Second); err != nil {
			t.Fatalf("roamd %s not ready: %v\n%s", name, err, logs.String())
		}
		return cmd, c, &logs
	}
	subnets := func(c *api.Client) []string {
		var sn []api.Subnet
		if err := c.Do(context.Background(), "GET", "/v1/subnets", nil, &sn); err != nil {
			t.Fatal(err)
		}
		var cidrs []string
		for _, s := range sn {
			cidrs = append(cidrs, s.CIDR.String())
		}
		sort.Strings(cidrs)
		return cidrs
	}
	create := func(c *api.Client, cidr string) {
		var sn api.Subnet
		if err := c.Do(context.Background(), "POST", "/v1/subnets", api.CreateSubnetInput{CIDR: cidr}, &sn); err != nil {
			t.Fatal(err)
		}
	}
	cmdA, a, logsA := start("a")
	_, b, _ := start("b")
	create(a, "10.1.0.0/24")
	waitFor(t, "b to serve a's subnet", func() bool { return slices.Equal(subnets(b), []string{"10.1.0.0/24"}) })
	create(b, "10.2.0.0/24")
	waitFor(t, "a to serve b's subnet", func() bool { return slices.Equal(subnets(a), []string{"10.1.0.0/24", "10.2.0.0/24"}) })

	cmdA.Process.Signal(syscall.SIGTERM)
	if err := cmdA.Wait(); err != nil {
		t.Fatalf("roamd a: %v\n%s", err, logsA.String())
	}
	create(b, "10.3.0.0/24")
	_, a2, _ := start("a")
	if got := subnets(a2); !slices.Equal(got, []string{"10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"}) {
		t.Fatalf("restarted roamd serves %v", got)
	}
}
