package tap

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// nsHandle opens the namespace named by a spec: a name under /run/netns or
// an absolute path. The caller closes it.
func nsHandle(ns string) (netns.NsHandle, error) {
	var h netns.NsHandle
	var err error
	if strings.HasPrefix(ns, "/") {
		h, err = netns.GetFromPath(ns)
	} else {
		h, err = netns.GetFromName(ns)
	}
	if err != nil {
		return netns.None(), fmt.Errorf("netns %s: %w", ns, err)
	}
	return h, nil
}

// InNetns runs fn on an OS thread switched into the namespace ns ("" runs fn
// where we are). File descriptors fn opens (TAP queues, sockets) stay in that
// namespace for their whole life, whichever thread uses them later. fn runs
// on a fresh goroutine so that a thread whose namespace could not be
// restored is thrown away instead of being reused.
func InNetns(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	target, err := nsHandle(ns)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netns: get current: %w", err)
			return // the thread stays locked and exits with the goroutine
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("netns %s: enter: %w", ns, err)
			runtime.UnlockOSThread()
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netns: restore: %w", err))
			return // leave the thread locked: it dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netlinkIn returns a netlink handle working in namespace ns ("" is ours).
func netlinkIn(ns string) (*netlink.Handle, error) {
	if ns == "" {
		return netlink.NewHandle()
	}
	h, err := nsHandle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netns %s: netlink: %w", ns, err)
	}
	return nh, nil
}

// LinkSettings are changes to a link's MAC, MTU and state; zero fields are
// left alone.
type LinkSettings struct {
	MAC  net.HardwareAddr
	MTU  int
	Up   bool // bring the link up
	Down bool // take the link down
}

// ConfigureLink applies c to the link ifname in namespace ns ("" is roamd's
// own). roam uses it on the guest side of a tap: port to give the device the
// record's MAC and MTU and to bring it up.
func ConfigureLink(ifname, ns string, c LinkSettings) error {
	h, err := netlinkIn(ns)
	if err != nil {
		return fmt.Errorf("link %s: %w", ifname, err)
	}
	defer h.Close()
	where := ifname
	if ns != "" {
		where += "@" + ns
	}
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s: %w", where, err)
	}
	if c.MAC != nil {
		if err := h.LinkSetHardwareAddr(l, c.MAC); err != nil {
			return fmt.Errorf("link %s: set address %s: %w", where, c.MAC, err)
		}
	}
	if c.MTU != 0 {
		if err := h.LinkSetMTU(l, c.MTU); err != nil {
			return fmt.Errorf("link %s: set mtu %d: %w", where, c.MTU, err)
		}
	}
	if c.Up {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("link %s: set up: %w", where, err)
		}
	}
	if c.Down {
		if err := h.LinkSetDown(l); err != nil {
			return fmt.Errorf("link %s: set down: %w", where, err)
		}
	}
	return nil
}
