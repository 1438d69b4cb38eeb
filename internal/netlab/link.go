package netlab

import (
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Netlink returns a netlink handle on namespace short ("": the root
// namespace); the caller deletes it.
func (w *Lab) Netlink(short string) (*netlink.Handle, error) {
	if short == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromName(w.NS(short))
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", w.NS(short), err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// Link returns the link dev of namespace short.
func (w *Lab) Link(short, dev string) (netlink.Link, error) {
	h, err := w.Netlink(short)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return h.LinkByName(dev)
}

// WaitLink waits (at most 5 s) for a link to exist in namespace short: roamd
// creates its TAP devices when it accepts the port.
func (w *Lab) WaitLink(short, dev string) error {
	h, err := w.Netlink(short)
	if err != nil {
		return err
	}
	defer h.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := h.LinkByName(dev)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has no link %s: %w", w.NS(short), dev, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LinkMAC returns the MAC of dev in namespace short.
func (w *Lab) LinkMAC(short, dev string) (string, error) {
	l, err := w.Link(short, dev)
	if err != nil {
		return "", err
	}
	return l.Attrs().HardwareAddr.String(), nil
}
