package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Modules are the kernel modules the guest loads, in this order, with
// busybox insmod (the kernel package has no modules.dep to let modprobe
// find the order).
var Modules = []string{
	"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
	"drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci", "net/core/failover",
	"drivers/net/net_failover", "drivers/net/virtio_net",
}

// ErrFetch marks a failure to get the Debian packages (apt-get update or
// download): the machine cannot reach its archive.
var ErrFetch = errors.New("cannot fetch Debian packages")

// Kit is what a guest is made of, unpacked from Debian packages into the
// cache: the cloud kernel's vmlinuz, the modules of Modules and a static
// busybox.
type Kit struct {
	Dir     string // the cache directory the kit lives in
	Kernel  string // vmlinuz (LZ4)
	Busybox string // static busybox
	ModDir  string // Modules, flat, as NAME.ko
	Version string // the kernel package, e.g. linux-image-6.1.0-57-cloud-amd64
}

// CacheDir is where Prepare keeps the Debian packages and what it unpacks
// from them: $ROAM_QEMU_CACHE when set, otherwise .cache/qemu at the root
// of the repository (the directory holding go.mod above the working
// directory; git ignores .cache), otherwise $XDG_CACHE_HOME/roam/qemu.
func CacheDir() (string, error) {
	if d := os.Getenv("ROAM_QEMU_CACHE"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, ".cache", "qemu"), nil
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "roam", "qemu"), nil
}

// Prepare returns the kit in dir, making it first when it is not there:
// it downloads busybox-static and the current cloud kernel package
// (linux-image-cloud-amd64's dependency) with apt-get download, and unpacks
// them with dpkg -x (busybox-static is never installed: it conflicts with
// busybox). Nothing is fetched from anywhere but the machine's Debian
// archive. A second call finds everything in dir and runs no command.
func Prepare(dir string) (*Kit, error) {
	k := &Kit{Dir: dir, Kernel: filepath.Join(dir, "kit", "vmlinuz"), Busybox: filepath.Join(dir, "kit", "busybox"),
		ModDir: filepath.Join(dir, "kit", "modules")}
	stamp := filepath.Join(dir, "kit", "VERSION")
	if b, err := os.ReadFile(stamp); err == nil {
		k.Version = strings.TrimSpace(string(b))
		return k, nil
	}
	debs := filepath.Join(dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, err
	}
	out, err := exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").CombinedOutput()
	if err != nil {
		// A fresh machine (a container image) may have no package lists.
		if uout, uerr := exec.Command("apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return nil, fmt.Errorf("%w: apt-get update: %v: %s", ErrFetch, uerr, uout)
		}
		out, err = exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").CombinedOutput()
	}
	if err != nil {
		return nil, fmt.Errorf("apt-cache depends linux-image-cloud-amd64: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			k.Version = f[1]
		}
	}
	if k.Version == "" {
		return nil, fmt.Errorf("apt-cache depends linux-image-cloud-amd64: no linux-image package in %q", out)
	}
	for _, pkg := range []string{"busybox-static", k.Version} {
		if m, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb")); len(m) > 0 {
			continue
		}
		cmd := exec.Command("apt-get", "download", pkg)
		cmd.Dir = debs
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%w: apt-get download %s: %v: %s", ErrFetch, pkg, err, out)
		}
	}
	tmp, err := os.MkdirTemp(dir, "unpack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for _, pkg := range []string{"busybox-static", k.Version} {
		m, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
		if len(m) == 0 {
			return nil, fmt.Errorf("%s: no .deb in %s after apt-get download", pkg, debs)
		}
		if out, err := exec.Command("dpkg", "-x", m[0], tmp).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg -x %s: %v: %s", m[0], err, out)
		}
	}
	kv := strings.TrimPrefix(k.Version, "linux-image-")
	os.RemoveAll(filepath.Join(dir, "kit"))
	if err := os.MkdirAll(k.ModDir, 0o755); err != nil {
		return nil, err
	}
	copies := [][2]string{
		{filepath.Join(tmp, "boot", "vmlinuz-"+kv), k.Kernel},
		{filepath.Join(tmp, "bin", "busybox"), k.Busybox},
	}
	for _, m := range Modules {
		copies = append(copies, [2]string{filepath.Join(tmp, "lib", "modules", kv, "kernel", m+".ko"),
			filepath.Join(k.ModDir, filepath.Base(m)+".ko")})
	}
	for _, c := range copies {
		b, err := os.ReadFile(c[0])
		if err != nil {
			return nil, fmt.Errorf("unpacked %s: %w", k.Version, err)
		}
		if err := os.WriteFile(c[1], b, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(stamp, []byte(k.Version+"\n"), 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// initScript is the guest's /init. It loads virtio-net, brings every NIC up
// and waits for its operstate to be up (frames sent before the qdisc is
// active are dropped), starts a watcher that does the same, then runs
// udhcpc, for every NIC that appears later (hot-plug) and logs NICs that
// disappear, and finally serves the command channel on ttyS1 (see VM.Run).
// The kernel console is ttyS0.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /run /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
	insmod /lib/modules/$m.ko || echo "init: insmod $m failed"
done
ip link set lo up
arg() { sed -n "s/.*roam\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
hostname "$(arg name)"
dhcp=$(arg dhcp)
now() { cut -d' ' -f1 /proc/uptime; }
up() {
	ip link set "$1" up
	i=0
	while [ "$(cat /sys/class/net/$1/operstate 2>/dev/null)" != up ] && [ $i -lt 200 ]; do usleep 20000; i=$((i+1)); done
	echo "$(now) up $1 $(cat /sys/class/net/$1/address)" >> /run/events
}
for d in /sys/class/net/eth*; do [ -e "$d" ] && up "${d##*/}"; done
(
	while :; do
		for d in /sys/class/net/eth*; do
			[ -e "$d" ] || continue
			n=${d##*/}
			[ -e /run/seen.$n ] && continue
			touch /run/seen.$n
			echo "$(now) appeared $n" >> /run/events
			( [ "$(cat /sys/class/net/$n/operstate)" = up ] || up $n
			  [ "$dhcp" = off ] || exec udhcpc -f -i $n -s /bin/dhcp.script -T 1 -t 3 -A 1 >/dev/null 2>&1 ) &
		done
		for f in /run/seen.*; do
			[ -e "$f" ] || continue
			n=${f#/run/seen.}
			[ -e /sys/class/net/$n ] || { rm -f "$f"; echo "$(now) gone $n" >> /run/events; }
		done
		usleep 100000
	done
) </dev/null >/dev/null 2>&1 &
echo "init: ready at $(now)"
stty -F /dev/ttyS1 raw -echo
exec </dev/ttyS1 >/dev/ttyS1 2>&1
while read -r id cmd; do
	sh -c "$cmd" </dev/null
	echo "@@END $id $?"
done
poweroff -f
`

// dhcpScript is udhcpc's script: it adds the leased address and, when the
// guest has none, a default route; it never removes an address, so that a
// standby guest configured by hand keeps its address when its lease comes.
const dhcpScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr add $ip/${mask:-24} dev $interface 2>/dev/null
	[ -n "$router" ] && ! ip route | grep -q '^default' && ip route add default via ${router%% *} dev $interface
	echo "$(cut -d' ' -f1 /proc/uptime) $1 $interface $ip" >> /run/events
	;;
esac
exit 0
`

// Initramfs writes the guest's initramfs to path: busybox as the whole
// userland, the modules, /init, udhcpc's script, and extra files (guest
// path -> host path), e.g. a static test program.
func (k *Kit) Initramfs(path string, extra map[string]string) error {
	var w cpioWriter
	for _, d := range []string{"bin", "dev", "lib", "lib/modules", "proc", "sys", "run", "tmp", "etc"} {
		w.dir(d)
	}
	w.node("dev/console", 0o020600, 5, 1)
	bb, err := os.ReadFile(k.Busybox)
	if err != nil {
		return err
	}
	w.file("bin/busybox", 0o755, bb)
	w.file("init", 0o755, []byte(initScript))
	w.file("bin/dhcp.script", 0o755, []byte(dhcpScript))
	for _, m := range Modules {
		name := filepath.Base(m) + ".ko"
		b, err := os.ReadFile(filepath.Join(k.ModDir, name))
		if err != nil {
			return err
		}
		w.file("lib/modules/"+name, 0o644, b)
	}
	for guest, host := range extra {
		b, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		w.file(strings.TrimPrefix(guest, "/"), 0o755, b)
	}
	w.trailer()
	if w.err != nil {
		return w.err
	}
	return os.WriteFile(path, w.buf.Bytes(), 0o644)
}

// cpioWriter writes the "newc" cpio format the kernel unpacks as an
// initramfs.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
	err error
}

func (w *cpioWriter) header(name string, mode, size, major, minor int) {
	w.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string) { w.header(name, 0o040755, 0, 0, 0) }

func (w *cpioWriter) node(name string, mode, major, minor int) { w.header(name, mode, 0, major, minor) }

func (w *cpioWriter) file(name string, perm int, data []byte) {
	if strings.Contains(name, "/") {
		// Parent directories must come first; those of extra files may
		// be missing.
		parts := strings.Split(name, "/")
		for i := 1; i < len(parts); i++ {
			w.dir(strings.Join(parts[:i], "/"))
		}
	}
	w.header(name, 0o100000|perm, len(data), 0, 0)
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) trailer() {
	w.header("TRAILER!!!", 0, 0, 0, 0)
	if w.buf.Len() == 0 {
		w.err = errors.New("cpio: empty")
	}
}
