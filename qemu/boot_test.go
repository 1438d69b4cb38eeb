package qemu

import (
	"context"
	"testing"
	"time"
)

func TestPrivilegedQEMUBoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vm := bootVM(t, ctx, Config{Name: "boot", Dir: t.TempDir()})
	out, err := vm.Run(ctx, "uname -r; hostname; cat /run/events; ls /sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", out)
}
