package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// ModuleRoot returns the directory of roam's go.mod, searched upwards from
// the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module roam\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("netlab: roam's go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Build compiles roamd and roamctl from the module's source into dir and
// returns their paths, so that a test runs the code of its own tree (bin/
// may be stale or absent in a clean clone).
func Build(dir string) (roamd, roamctl string, err error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", "", err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-o", dir+string(filepath.Separator), "./cmd/roamd", "./cmd/roamctl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build roamd roamctl: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return filepath.Join(dir, "roamd"), filepath.Join(dir, "roamctl"), nil
}
