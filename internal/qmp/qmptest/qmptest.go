// Package qmptest is an in-memory twin of a QEMU monitor for tests: a unix
// socket that speaks enough QMP (greeting, qmp_capabilities, netdev_add,
// device_add, device_del with its DEVICE_DELETED event, netdev_del) to
// check what a client asked for, and keeps the devices and netdevs it has.
package qmptest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"sync"
)

// Server is a fake monitor.
type Server struct {
	Path string

	ln  net.Listener
	wg  sync.WaitGroup
	mu  sync.Mutex
	log []string          // "command id" of every command, in order
	dev map[string]string // device id -> netdev id
	net map[string]string // netdev id -> socket path
	mac map[string]string // device id -> MAC
	// Fail maps a command name to the error description QEMU answers it
	// with (class GenericError).
	Fail map[string]string
}

// Start listens on path.
func Start(path string) (*Server, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	s := &Server{Path: path, ln: ln, dev: map[string]string{}, net: map[string]string{}, mac: map[string]string{}, Fail: map[string]string{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.ln.Close(); s.wg.Wait() }

// Log returns the commands received so far, as "command id".
func (s *Server) Log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// Devices returns "id mac netdev-path" for each device present, sorted.
func (s *Server) Devices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, nd := range s.dev {
		out = append(out, fmt.Sprintf("%s %s %s", id, s.mac[id], s.net[nd]))
	}
	sort.Strings(out)
	return out
}

// Netdevs returns the ids of the netdevs present, sorted.
func (s *Server) Netdevs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id := range s.net {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	enc := json.NewEncoder(c)
	enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{}}})
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return
		}
		var args struct {
			ID     string `json:"id"`
			Type   string `json:"type"`
			Netdev string `json:"netdev"`
			MAC    string `json:"mac"`
			Driver string `json:"driver"`
			Addr   struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"addr"`
		}
		json.Unmarshal(req.Arguments, &args)
		errDesc, deleted := s.do(req.Execute, args.ID, args.Netdev, args.MAC, args.Addr.Path, args.Type, args.Driver)
		reply := map[string]any{"id": req.ID}
		if errDesc != "" {
			class := "GenericError"
			if errDesc == "not found" {
				class = "DeviceNotFound"
			}
			reply["error"] = map[string]any{"class": class, "desc": errDesc}
		} else {
			reply["return"] = map[string]any{}
		}
		enc.Encode(reply)
		if deleted {
			enc.Encode(map[string]any{"event": "DEVICE_DELETED", "data": map[string]any{"device": args.ID}})
		}
	}
}

func (s *Server) do(cmd, id, netdev, mac, path, typ, driver string) (errDesc string, deleted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd != "qmp_capabilities" {
		s.log = append(s.log, cmd+" "+id)
	}
	if d, ok := s.Fail[cmd]; ok {
		return d, false
	}
	switch cmd {
	case "qmp_capabilities":
	case "netdev_add":
		if _, dup := s.net[id]; dup {
			return "Duplicate ID '" + id + "' for netdev", false
		}
		if typ != "stream" || path == "" {
			return "want a stream netdev on a unix socket", false
		}
		s.net[id] = path
	case "device_add":
		if _, dup := s.dev[id]; dup {
			return "Duplicate device ID '" + id + "'", false
		}
		if _, ok := s.net[netdev]; !ok || driver != "virtio-net-pci" {
			return "Property 'virtio-net-pci.netdev' can't find value '" + netdev + "'", false
		}
		s.dev[id], s.mac[id] = netdev, mac
	case "device_del":
		if _, ok := s.dev[id]; !ok {
			return "not found", false
		}
		delete(s.dev, id)
		delete(s.mac, id)
		return "", true
	case "netdev_del":
		if _, ok := s.net[id]; !ok {
			return "not found", false
		}
		delete(s.net, id)
	default:
		return "The command " + cmd + " has not been found", false
	}
	return "", false
}
