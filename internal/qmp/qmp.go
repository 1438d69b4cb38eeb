// Package qmp is a small client of the QEMU Machine Protocol: JSON objects
// over a unix socket. Dial reads the greeting and negotiates capabilities
// (qmp_capabilities); Execute sends one command and returns its answer;
// events that arrive meanwhile are kept for WaitEvent. A Client is meant to
// live for one short conversation (roam dials the monitor for each hot-plug
// or unplug) and is not safe for concurrent use.
package qmp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Client is a QMP connection.
type Client struct {
	path   string
	conn   net.Conn
	dec    *json.Decoder
	id     int
	events []Event
}

// Event is an asynchronous QMP event.
type Event struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// Error is an error answer of QEMU.
type Error struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string { return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc) }

type message struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	ID     json.RawMessage `json:"id"`
}

// Dial connects to the monitor at path, reads its greeting and enters
// command mode. timeout bounds the whole conversation's each step.
func Dial(path string, timeout time.Duration) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	c := &Client{path: path, conn: conn, dec: json.NewDecoder(bufio.NewReader(conn))}
	conn.SetDeadline(time.Now().Add(timeout))
	var greet message
	if err := c.dec.Decode(&greet); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: greeting: %w", path, err)
	}
	if greet.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: not a QMP monitor (no greeting)", path)
	}
	if _, err := c.Execute("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// SetDeadline bounds the next calls.
func (c *Client) SetDeadline(t time.Time) { c.conn.SetDeadline(t) }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Execute runs a command with arguments (nil for none) and returns the
// value of its "return".
func (c *Client) Execute(cmd string, args any) (json.RawMessage, error) {
	c.id++
	req := map[string]any{"execute": cmd, "id": c.id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: send %s: %w", c.path, cmd, err)
	}
	want, _ := json.Marshal(c.id)
	for {
		var m message
		if err := c.dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("qmp %s: %s: %w", c.path, cmd, err)
		}
		if m.Event != "" {
			c.events = append(c.events, Event{Event: m.Event, Data: m.Data})
			continue
		}
		if string(m.ID) != string(want) {
			continue
		}
		if m.Error != nil {
			m.Error.Command = cmd
			return nil, m.Error
		}
		return m.Return, nil
	}
}

// WaitEvent returns the first event named name for which match (nil: any)
// holds, reading until the connection's deadline.
func (c *Client) WaitEvent(name string, match func(data json.RawMessage) bool) (Event, error) {
	for i, ev := range c.events {
		if ev.Event == name && (match == nil || match(ev.Data)) {
			c.events = append(c.events[:i], c.events[i+1:]...)
			return ev, nil
		}
	}
	for {
		var m message
		if err := c.dec.Decode(&m); err != nil {
			return Event{}, fmt.Errorf("qmp %s: waiting for %s: %w", c.path, name, err)
		}
		if m.Event == name && (match == nil || match(m.Data)) {
			return Event{Event: m.Event, Data: m.Data}, nil
		}
		if m.Event != "" {
			c.events = append(c.events, Event{Event: m.Event, Data: m.Data})
		}
	}
}

// IsNotFound reports whether err is QEMU's answer that the device or
// netdev named does not exist.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Class == "DeviceNotFound"
}

// PlugNIC adds a virtio-net-pci device with id and mac to the running VM,
// on a stream netdev of the same id that connects to the unix socket sock
// (which must already listen: QEMU 7.2 does not retry).
func PlugNIC(monitor, id, sock, mac string, timeout time.Duration) error {
	c, err := Dial(monitor, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Execute("netdev_add", map[string]any{"type": "stream", "id": id, "server": false,
		"addr": map[string]any{"type": "unix", "path": sock}}); err != nil {
		return err
	}
	if _, err := c.Execute("device_add", map[string]any{"driver": "virtio-net-pci", "id": id, "netdev": id, "mac": mac}); err != nil {
		c.Execute("netdev_del", map[string]any{"id": id})
		return err
	}
	return nil
}

// UnplugNIC removes the device and the netdev that PlugNIC added: it asks
// for the device's removal (device_del), waits until the guest has released
// it (DEVICE_DELETED; the guest must take part, as with ACPI PCI hot-unplug)
// and deletes the netdev. A device or netdev that is already gone is no
// error.
func UnplugNIC(monitor, id string, timeout time.Duration) error {
	c, err := Dial(monitor, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Execute("device_del", map[string]any{"id": id}); err == nil {
		if _, err := c.WaitEvent("DEVICE_DELETED", func(d json.RawMessage) bool {
			var x struct {
				Device string `json:"device"`
			}
			return json.Unmarshal(d, &x) == nil && x.Device == id
		}); err != nil {
			return err
		}
	} else if !IsNotFound(err) {
		return err
	}
	if _, err := c.Execute("netdev_del", map[string]any{"id": id}); err != nil && !IsNotFound(err) {
		return err
	}
	return nil
}
