package netlab

import (
	"fmt"
	"os"
	"os/exec"
)

// Missing says why this process cannot build labs ("" when it can): it
// must be root, /dev/net/tun must exist, and so must each of tools in
// PATH. A test skips with the reason.
func Missing(tools ...string) string {
	if os.Geteuid() != 0 {
		return "not root: needs network namespaces, TAP devices and TCP_REPAIR"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Sprintf("/dev/net/tun is missing: %v", err)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("%s is missing (scripts/deps.sh installs it)", tool)
		}
	}
	return ""
}
