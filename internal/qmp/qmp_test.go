package qmp_test

import (
	"errors"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"roam/internal/qmp"
	"roam/internal/qmp/qmptest"
)

func TestPlugUnplug(t *testing.T) {
	dir := t.TempDir()
	s, err := qmptest.Start(filepath.Join(dir, "m.qmp"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sock := filepath.Join(dir, "n.sock")
	if err := qmp.PlugNIC(s.Path, "roam0", sock, "02:00:00:00:00:01", time.Second); err != nil {
		t.Fatalf("PlugNIC: %v", err)
	}
	if got, want := s.Devices(), []string{"roam0 02:00:00:00:00:01 " + sock}; !slices.Equal(got, want) {
		t.Fatalf("devices: got %q, want %q", got, want)
	}
	if err := qmp.PlugNIC(s.Path, "roam0", sock, "02:00:00:00:00:01", time.Second); err == nil {
		t.Fatalf("PlugNIC of a duplicate id: got nil, want QEMU's error")
	}
	if err := qmp.UnplugNIC(s.Path, "roam0", time.Second); err != nil {
		t.Fatalf("UnplugNIC: %v", err)
	}
	if err := qmp.UnplugNIC(s.Path, "roam0", time.Second); err != nil {
		t.Fatalf("UnplugNIC of a device already gone: got %v, want nil", err)
	}
	if d, n := s.Devices(), s.Netdevs(); len(d)+len(n) != 0 {
		t.Fatalf("after unplug: devices %q, netdevs %q", d, n)
	}
	want := []string{"netdev_add roam0", "device_add roam0", "netdev_add roam0", "device_del roam0", "netdev_del roam0", "device_del roam0", "netdev_del roam0"}
	if got := s.Log(); !slices.Equal(got, want) {
		t.Fatalf("commands: got %q, want %q", got, want)
	}

	// A refused device_add takes its netdev back.
	s.Fail["device_add"] = "Bus 'pci.0' does not support hotplugging"
	err = qmp.PlugNIC(s.Path, "roam1", sock, "02:00:00:00:00:02", time.Second)
	var qe *qmp.Error
	if !errors.As(err, &qe) || qe.Command != "device_add" || qe.Class != "GenericError" {
		t.Fatalf("refused device_add: got %v, want a *qmp.Error of device_add", err)
	}
	if n := s.Netdevs(); len(n) != 0 {
		t.Fatalf("refused device_add left netdevs %q", n)
	}
}

func TestDialNotAMonitor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte(`{"hello": 1}` + "\n"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	if _, err := qmp.Dial(path, time.Second); err == nil {
		t.Fatalf("Dial of a server without a QMP greeting: got nil error")
	}
	if _, err := qmp.Dial(filepath.Join(t.TempDir(), "none"), time.Second); err == nil {
		t.Fatalf("Dial of a missing socket: got nil error")
	}
}
