package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"roam/internal/netlab"
)

// bins are roamd and roamctl built from this tree by TestMain; skip says
// why privileged tests cannot run.
var (
	roamd, roamctl string
	skip           string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	skip = netlab.Missing("ip", "ping")
	if skip == "" {
		dir, err := os.MkdirTemp("", "roam-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if roamd, roamctl, err = netlab.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}
	return m.Run()
}

// newLab returns an empty Lab that t's cleanup closes, keeping the
// temp dir and printing roamd's log when t failed.
func newLab(t *testing.T) *netlab.Lab {
	t.Helper()
	if skip != "" {
		t.Skip(skip)
	}
	w, err := netlab.New(netlab.Config{Roamd: roamd, Roamctl: roamctl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log := w.RoamdLog(); log != "" {
				t.Logf("roamd log (%s):\n%s", w.Dir, tail(log, 60))
			}
		}
		if err := w.Close(t.Failed()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return w
}

// must fails t with err when it is not nil.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
