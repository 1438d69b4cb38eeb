package qemu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"roam/internal/netlab"
)

var (
	kitOnce   sync.Once
	kitInitrd string
	kitAgent  string
	kitKit    *Kit
	kitErr    error
)

// needQEMU skips the test unless it runs as root with qemu-system-x86_64,
// apt-get and dpkg, and returns the kit and an initramfs with the guest
// agent.
func needQEMU(t *testing.T) (*Kit, string) {
	t.Helper()
	if why := netlab.Missing("qemu-system-x86_64", "apt-get", "dpkg", "ip"); why != "" {
		t.Skip("QEMU tests (QEMU taps, namespaces, roamd's ports; run make test as root): " + why)
	}
	kitOnce.Do(func() {
		dir, err := CacheDir()
		if err != nil {
			kitErr = err
			return
		}
		kitKit, kitErr = Prepare(dir)
		if kitErr != nil {
			return
		}
		tmp, err := os.MkdirTemp("", "roamqemu-kit-")
		if err != nil {
			kitErr = err
			return
		}
		agent := filepath.Join(tmp, "guestagent")
		kitAgent = agent
		cmd := exec.Command("go", "build", "-o", agent, "./guestagent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			kitErr = err
			t.Logf("go build guestagent: %s", out)
			return
		}
		kitInitrd = filepath.Join(tmp, "initrd.cpio")
		kitErr = kitKit.Initramfs(kitInitrd, map[string]string{"bin/guestagent": agent})
	})
	if errors.Is(kitErr, ErrFetch) {
		t.Skipf("the guest's Debian packages cannot be fetched (no archive reachable?): %v", kitErr)
	}
	if kitErr != nil {
		t.Fatalf("prepare the guest: %v", kitErr)
	}
	return kitKit, kitInitrd
}

func bootVM(t *testing.T, ctx context.Context, cfg Config) *VM {
	t.Helper()
	k, initrd := needQEMU(t)
	cfg.Kernel, cfg.Initrd = k.Kernel, initrd
	vm, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("boot %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() {
		vm.Poweroff(3 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(vm.Console)
			t.Logf("console of %s:\n%s", vm.Name, b)
		}
	})
	t.Logf("%s booted in %v", vm.Name, vm.Booted.Round(time.Millisecond))
	return vm
}
