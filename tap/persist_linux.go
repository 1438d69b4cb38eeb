package tap

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Persister is implemented by ports whose device can outlive roamd's file
// descriptors (TAP devices): with persistence on, closing the port leaves
// the device, its guest-side addresses and routes in place, and the next
// Open of the same spec attaches to it again. roamd turns it on for a
// graceful restart and off again once the new process holds the device.
type Persister interface {
	SetPersist(on bool) error
}

// SetPersist sets or clears TUNSETPERSIST on the device. A persistent
// device survives Close; Open of the same spec reattaches to it.
func (d *Device) SetPersist(on bool) error {
	if d.closed.Load() || len(d.queues) == 0 {
		return fmt.Errorf("%s: %w", d.name, ErrClosed)
	}
	v := 0
	if on {
		v = 1
	}
	var err error
	if cerr := d.queues[0].rc.Control(func(fd uintptr) {
		err = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, v)
	}); cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("TUNSETPERSIST %d %s: %w", v, d.name, err)
	}
	return nil
}
