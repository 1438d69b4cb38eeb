package e2e

import (
	"fmt"
	"io"
	"os"
	"time"

	"roam/internal/netlab"
)

// Addresses shared by every arm. The public side uses 203.0.113.0/24
// (TEST-NET-3); the inside 10.0.0.0/24.
const (
	pubClientIP = "203.0.113.2"  // the outside client in the pub namespace
	pubGwIP     = "203.0.113.1"  // the gateway's own public address
	eipIP       = "203.0.113.10" // the public IP mapped 1:1 to vmA's record
	vmIP        = "10.0.0.10"    // vmA's private IP (and vmB's standby copy)
	vmBOwnIP    = "10.0.0.11"    // vmB's own IP where an arm cannot share one
	gwInIP      = "10.0.0.1"     // the subnet's gateway

	macPub   = "02:00:00:00:01:02"
	macGwPub = "02:00:00:00:01:01"
	macGwIn  = "02:00:00:00:00:01"
	macVMA   = "02:00:00:00:0a:0a"
	macVMB   = "02:00:00:00:0b:0b"

	portIperf = 5201
	portUDP   = 9000
	portConn  = 9100
	portSeq   = 9200
	portTCP   = 9300
)

// Env is one benchmark process's lab (netlab.Lab): namespaces named
// after the PID ("rb1234-pub"), a temp directory, and every child process
// and namespace it created, so that Reset (after each arm) and Close
// remove exactly those; plus the helper binary and the log.
type Env struct {
	*netlab.Lab
	Self string // absolute path of the roame2e binary (helpers)
	Log  io.Writer
}

// Proc is a child process of the benchmark.
type Proc = netlab.Proc

// NewEnv makes the lab for cfg; with cfg.Debug, every command is printed
// on cfg.Log.
func NewEnv(cfg Config) (*Env, error) {
	lc := netlab.Config{Prefix: fmt.Sprintf("rb%d-", os.Getpid()), Timeout: 60 * time.Second, TempPattern: "roam-bench-e2e-"}
	if containsStr(cfg.Arms, "roam") {
		lc.Roamd, lc.Roamctl = cfg.Roamd, cfg.Roamctl
	}
	if cfg.Debug {
		lc.Trace = cfg.Log
	}
	lab, err := netlab.New(lc)
	if err != nil {
		return nil, err
	}
	return &Env{Lab: lab, Self: cfg.Self, Log: cfg.Log}, nil
}

func (e *Env) logf(format string, args ...any) {
	fmt.Fprintf(e.Log, "  "+format+"\n", args...)
}
