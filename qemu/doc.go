// Package qemu boots throw-away QEMU guests for roam's privileged tests and
// holds those tests: real VMs attached to roam through stream: and netdev:
// ports, DHCP from roam, reassign between running VMs, NIC hot-plug over
// QMP, and a VM killed mid-stream.
//
// The tests' roamd is a real process built from this tree, in a
// netlab.Lab (internal/netlab) with its uplink in an outside namespace and
// driven by roamctl; qemu keeps only what is about VMs: the guest, its
// command channel, booting and stopping it.
//
// # The guest
//
// Prepare downloads two Debian packages once (apt-get download, into the
// cache of CacheDir): busybox-static and the current cloud kernel
// (linux-image-*-cloud-amd64, whose LZ4 vmlinuz boots to userspace in a few
// seconds under software emulation). It unpacks them with dpkg -x and keeps
// the vmlinuz, a static busybox and the virtio-net modules. Kit.Initramfs
// makes an initramfs of these: busybox is the whole userland; /init loads
// the modules with insmod in dependency order, brings every NIC up and
// waits for operstate up (a frame sent before the qdisc is active is
// dropped), then watches /sys/class/net: every NIC, at boot or hot-plugged,
// is brought up and gets its address from udhcpc; every event goes to
// /run/events with the guest's uptime.
//
// # The command channel
//
// QEMU gets two serial ports: ttyS0 is the kernel console (a log file), ttyS1
// a unix socket (Dir/NAME.cmd) on which init reads one command per line,
// "ID COMMAND", runs it with sh -c and answers with the command's output
// followed by "@@END ID STATUS". VM.Run sends a command and waits for its
// answer; answers to abandoned commands are recognized by their ID and
// skipped. A VM is ready when it answers its first command.
//
// Command roamguest (qemu/cmd/roamguest) boots such a guest by hand.
//
// QEMU always runs with -accel tcg: /dev/kvm may open on a CI machine whose
// KVM guests then hang.
package qemu
