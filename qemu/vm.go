package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NIC is a network card the VM boots with: a virtio-net-pci device with
// MAC (QEMU picks one when empty) on a stream socket (Stream: QEMU connects
// to the unix socket roam listens on) or a TAP device QEMU creates itself
// (Tap: roam attaches to it with a netdev: port).
type NIC struct {
	Stream string
	Tap    string
	MAC    string
}

// Args returns the QEMU arguments of the NIC with netdev id id.
func (n NIC) Args(id string) []string {
	var nd string
	switch {
	case n.Stream != "":
		nd = "stream,id=" + id + ",server=off,addr.type=unix,addr.path=" + n.Stream
	default:
		nd = "tap,id=" + id + ",ifname=" + n.Tap + ",script=no,downscript=no,vnet_hdr=on"
	}
	dev := "virtio-net-pci,netdev=" + id + ",id=" + id + "dev"
	if n.MAC != "" {
		dev += ",mac=" + n.MAC
	}
	return []string{"-netdev", nd, "-device", dev}
}

// Config describes a VM.
type Config struct {
	Name   string // host name of the guest, and the prefix of its files in Dir
	Dir    string // where the console log and the sockets go
	Kernel string
	Initrd string
	Memory int // MiB, default 256
	NICs   []NIC
	QMP    bool // open a QMP monitor at Dir/NAME.qmp
	NoDHCP bool // do not run udhcpc on the NICs
}

// VM is a running QEMU guest.
type VM struct {
	Name    string
	Console string // the kernel console's log
	QMPPath string // "" without a monitor
	Booted  time.Duration

	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu   sync.Mutex
	conn net.Conn
	rd   *bufio.Reader
	seq  int
}

// Args returns the QEMU command line of cfg. The guest runs under software
// emulation (-accel tcg): /dev/kvm may open on a CI machine whose KVM
// guests then hang.
func (cfg Config) Args() []string {
	mem := cfg.Memory
	if mem == 0 {
		mem = 256
	}
	base := filepath.Join(cfg.Dir, cfg.Name)
	// no_timer_check: on a loaded host the emulated timer may miss the
	// kernel's IO-APIC check, which then panics.
	app := "console=ttyS0 quiet panic=-1 no_timer_check roam.name=" + cfg.Name
	if cfg.NoDHCP {
		app += " roam.dhcp=off"
	}
	args := []string{"-accel", "tcg", "-M", "pc", "-m", strconv.Itoa(mem), "-nodefaults", "-no-user-config",
		"-display", "none", "-no-reboot", "-kernel", cfg.Kernel, "-initrd", cfg.Initrd, "-append", app,
		"-serial", "file:" + base + ".console", "-serial", "unix:" + base + ".cmd,server=on,wait=off"}
	if cfg.QMP {
		args = append(args, "-qmp", "unix:"+base+".qmp,server=on,wait=off")
	}
	for i, n := range cfg.NICs {
		args = append(args, n.Args("net"+strconv.Itoa(i))...)
	}
	return args
}

// Start boots a VM and returns once its init serves the command channel,
// i.e. once its boot NICs are up. A guest that dies while booting (an
// emulated machine on a loaded host can miss a timer check) is booted
// once more.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	vm, err := start(ctx, cfg)
	if err != nil && ctx.Err() == nil && vm != nil && vm.Exited() {
		vm, err = start(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	return vm, nil
}

func start(ctx context.Context, cfg Config) (*VM, error) {
	base := filepath.Join(cfg.Dir, cfg.Name)
	for _, ext := range []string{".cmd", ".qmp", ".console"} {
		os.Remove(base + ext)
	}
	vm := &VM{Name: cfg.Name, Console: base + ".console", done: make(chan struct{})}
	if cfg.QMP {
		vm.QMPPath = base + ".qmp"
	}
	start := time.Now()
	vm.cmd = exec.Command("qemu-system-x86_64", cfg.Args()...)
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := os.Create(base + ".qemu.log")
	if err != nil {
		return nil, err
	}
	vm.cmd.Stdout, vm.cmd.Stderr = out, out
	if err := vm.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	go func() {
		vm.err = vm.cmd.Wait()
		out.Close()
		close(vm.done)
	}()
	for {
		c, err := net.Dial("unix", base+".cmd")
		if err == nil {
			vm.conn, vm.rd = c, bufio.NewReader(c)
			break
		}
		select {
		case <-vm.done:
			b, _ := os.ReadFile(base + ".qemu.log")
			return vm, fmt.Errorf("qemu %s exited: %v: %s", cfg.Name, vm.err, b)
		case <-ctx.Done():
			vm.Kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The first command is answered once init reaches its loop; lines
	// sent before are answered later and skipped by sequence number.
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := vm.Run(c, "true")
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || vm.Exited() {
			b, _ := os.ReadFile(vm.Console)
			vm.Kill()
			return vm, fmt.Errorf("vm %s did not come up: %v; console:\n%s", cfg.Name, err, b)
		}
	}
	vm.Booted = time.Since(start)
	return vm, nil
}

// Run runs a shell command in the guest and returns its output (stdout and
// stderr). A non-zero exit status is an error that carries the output.
func (vm *VM) Run(ctx context.Context, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\n\r") {
		return "", fmt.Errorf("command %q: one line only", cmd)
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.seq++
	id := strconv.Itoa(vm.seq)
	if dl, ok := ctx.Deadline(); ok {
		vm.conn.SetDeadline(dl)
	} else {
		vm.conn.SetDeadline(time.Time{})
	}
	if _, err := fmt.Fprintf(vm.conn, "%s %s\n", id, cmd); err != nil {
		return "", fmt.Errorf("vm %s: send %q: %w", vm.Name, cmd, err)
	}
	var out strings.Builder
	for {
		line, err := vm.rd.ReadString('\n')
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The answer may come later: resync by sequence number.
				return out.String(), fmt.Errorf("vm %s: %q: no answer in time", vm.Name, cmd)
			}
			return out.String(), fmt.Errorf("vm %s: %q: %w", vm.Name, cmd, err)
		}
		if rest, ok := strings.CutPrefix(line, "@@END "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 {
				continue
			}
			if f[0] != id {
				out.Reset() // the answer to an earlier, abandoned command
				continue
			}
			if f[1] != "0" {
				return out.String(), fmt.Errorf("vm %s: %q exited %s: %s", vm.Name, cmd, f[1], strings.TrimSpace(out.String()))
			}
			return out.String(), nil
		}
		out.WriteString(line)
	}
}

// WaitFor runs cmd every interval until it succeeds and returns its output.
func (vm *VM) WaitFor(ctx context.Context, cmd string, interval time.Duration) (string, error) {
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := vm.Run(c, cmd)
		cancel()
		if err == nil {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-vm.done:
			return out, fmt.Errorf("vm %s exited", vm.Name)
		case <-time.After(interval):
		}
	}
}

// Addr returns the IPv4 address (without prefix length) of dev in the
// guest, "" when it has none.
func (vm *VM) Addr(ctx context.Context, dev string) string {
	out, err := vm.Run(ctx, "ip -4 -o addr show dev "+dev)
	if err != nil {
		return ""
	}
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "inet" {
			a, _, _ := strings.Cut(f[i+1], "/")
			return a
		}
	}
	return ""
}

// Exited reports whether QEMU has exited.
func (vm *VM) Exited() bool {
	select {
	case <-vm.done:
		return true
	default:
		return false
	}
}

// Pid returns QEMU's process id.
func (vm *VM) Pid() int { return vm.cmd.Process.Pid }

// Kill kills QEMU (SIGKILL, by its pid) and waits for it.
func (vm *VM) Kill() {
	if vm.conn != nil {
		vm.conn.Close()
	}
	if !vm.Exited() {
		vm.cmd.Process.Kill()
	}
	<-vm.done
}

// Poweroff asks the guest to power off and waits for QEMU to exit, killing
// it after timeout.
func (vm *VM) Poweroff(timeout time.Duration) {
	if !vm.Exited() {
		vm.mu.Lock()
		fmt.Fprintf(vm.conn, "0 poweroff -f\n")
		vm.mu.Unlock()
	}
	select {
	case <-vm.done:
	case <-time.After(timeout):
	}
	vm.Kill()
}
