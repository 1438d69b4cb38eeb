// Command roamguest boots the throw-away test guest of package qemu by hand:
// the cloud kernel and busybox from Debian's packages (downloaded once into
// the cache), under QEMU with software emulation, with NICs on roam's ports.
// Once the guest is up it reads shell commands from stdin, one per line,
// runs them in the guest and prints their output; end of input powers the
// guest off.
//
//	roamctl instance create vm1 --port stream:/tmp/vm1.sock
//	go run ./qemu/cmd/roamguest -name vm1 -stream /tmp/vm1.sock -mac RECORD-MAC
//	> ip addr
//
// -print prints the QEMU command line and exits.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"roam/qemu"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var streams, taps, macs list
	name := flag.String("name", "guest", "the guest's host name")
	dir := flag.String("dir", "", "directory for the console log and sockets (default: a new temporary one)")
	qmp := flag.Bool("qmp", false, "open a QMP monitor at DIR/NAME.qmp (for roamctl instance create --qmp)")
	agent := flag.String("agent", "", "a static binary to put in the guest as /bin/guestagent")
	printOnly := flag.Bool("print", false, "print the QEMU command line and exit")
	flag.Var(&streams, "stream", "a NIC on roam's stream socket PATH (repeatable)")
	flag.Var(&taps, "tap", "a NIC on a TAP named IFNAME that QEMU creates (repeatable; roam attaches with netdev:IFNAME)")
	flag.Var(&macs, "mac", "the MAC of the next NIC, streams first (repeatable)")
	flag.Parse()
	if err := run(*name, *dir, *qmp, *agent, *printOnly, streams, taps, macs); err != nil {
		fmt.Fprintln(os.Stderr, "roamguest:", err)
		os.Exit(1)
	}
}

func run(name, dir string, qmp bool, agent string, printOnly bool, streams, taps, macs []string) error {
	cache, err := qemu.CacheDir()
	if err != nil {
		return err
	}
	kit, err := qemu.Prepare(cache)
	if err != nil {
		return err
	}
	if dir == "" && !printOnly {
		if dir, err = os.MkdirTemp("", "roamguest-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	extra := map[string]string{}
	if agent != "" {
		extra["bin/guestagent"] = agent
	}
	initrd := filepath.Join(dir, name+".initrd")
	cfg := qemu.Config{Name: name, Dir: dir, Kernel: kit.Kernel, Initrd: initrd, QMP: qmp}
	for _, s := range streams {
		cfg.NICs = append(cfg.NICs, qemu.NIC{Stream: s})
	}
	for _, t := range taps {
		cfg.NICs = append(cfg.NICs, qemu.NIC{Tap: t})
	}
	for i, m := range macs {
		if i < len(cfg.NICs) {
			cfg.NICs[i].MAC = m
		}
	}
	if printOnly {
		args := cfg.Args()
		for i, a := range args {
			if strings.ContainsAny(a, " \t") {
				args[i] = "'" + a + "'"
			}
		}
		fmt.Println("qemu-system-x86_64 " + strings.Join(args, " "))
		return nil
	}
	if err := kit.Initramfs(initrd, extra); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	vm, err := qemu.Start(ctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer vm.Poweroff(5 * time.Second)
	fmt.Fprintf(os.Stderr, "%s is up after %v (console: %s", name, vm.Booted.Round(time.Millisecond), vm.Console)
	if vm.QMPPath != "" {
		fmt.Fprintf(os.Stderr, ", monitor: %s", vm.QMPPath)
	}
	fmt.Fprintln(os.Stderr, "); one command per line, end of input powers it off")
	sc := bufio.NewScanner(os.Stdin)
	for fmt.Fprint(os.Stderr, "> "); sc.Scan(); fmt.Fprint(os.Stderr, "> ") {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := vm.Run(ctx, sc.Text())
		cancel()
		fmt.Print(out)
		if err != nil && out == "" {
			fmt.Fprintln(os.Stderr, err)
		}
		if vm.Exited() {
			return fmt.Errorf("the guest exited")
		}
	}
	return nil
}
