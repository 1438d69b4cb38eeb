package main

import (
	"strings"
	"testing"
)

// TestE2ENotBuilt: without bin/roame2e, `roambench e2e` says how to build it.
func TestE2ENotBuilt(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findE2E()
	if err == nil || !strings.Contains(err.Error(), "make bench-e2e") {
		t.Fatalf("got %v, want an error naming make bench-e2e", err)
	}
}
