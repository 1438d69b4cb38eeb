package netlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
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
		// Not on PATH (sudo, a bare CI shell): the toolchain this was
		// built with usually sits in the standard place.
		gobin = "/usr/local/go/bin/go"
		if g := os.Getenv("GOROOT"); g != "" {
			gobin = filepath.Join(g, "bin", "go")
		}
	}
	cmd := exec.Command(gobin, "build", "-o", dir+string(filepath.Separator), "./cmd/roamd", "./cmd/roamctl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build roamd roamctl: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return filepath.Join(dir, "roamd"), filepath.Join(dir, "roamctl"), nil
}

// RoamdLog returns what roamd wrote so far (its structured log).
func (w *Lab) RoamdLog() string {
	b, _ := os.ReadFile(filepath.Join(w.Dir, "roamd.log"))
	return string(b)
}

// Roamd returns the running roamd, or nil.
func (w *Lab) Roamd() *Proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.roamd
}

// StartRoamd starts roamd with its state and socket in the Lab's dir
// and the given flags (e.g. --uplink), and waits for its socket to answer.
func (w *Lab) StartRoamd(flags ...string) error {
	args := append([]string{
		"--state-dir", filepath.Join(w.Dir, "state"), "--socket", w.Socket,
		"--socket-group", "", "--no-sync",
	}, flags...)
	p, err := w.Start("", filepath.Join(w.Dir, "roamd.log"), w.cfg.Roamd, args...)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.roamd = p
	w.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if !p.Running() {
			return fmt.Errorf("roamd exited: %v: %s", p.err, strings.TrimSpace(w.RoamdLog()))
		}
		if _, err := w.Ctl("subnet", "list"); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("roamd does not answer on %s: %w; log: %s", w.Socket, err, strings.TrimSpace(w.RoamdLog()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CtlError is a failed roamctl command with the error object it printed.
type CtlError struct {
	Args    []string
	Code    string
	Message string
	Err     error // the exit status or a decoding failure
}

func (e *CtlError) Error() string {
	return fmt.Sprintf("roamctl %s: %s: %s (%v)", strings.Join(e.Args, " "), e.Code, e.Message, e.Err)
}

// Ctl runs roamctl --output json with args against the Lab's roamd and
// returns what it printed (the JSON object or list). A non-zero exit is a
// *CtlError with the code and message roamctl printed.
func (w *Lab) Ctl(args ...string) ([]byte, error) {
	full := append([]string{"--socket", w.Socket, "--output", "json"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w.trace("$ roamctl %s", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, w.cfg.Roamctl, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		var body struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(out.Bytes(), &body)
		msg := body.Error.Message
		if msg == "" {
			msg = strings.TrimSpace(errb.String() + " " + out.String())
		}
		return nil, &CtlError{Args: args, Code: body.Error.Code, Message: msg, Err: err}
	}
	return out.Bytes(), nil
}

// CtlInto runs Ctl and decodes its JSON into v.
func (w *Lab) CtlInto(v any, args ...string) error {
	out, err := w.Ctl(args...)
	if err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(out, v); err != nil {
		return &CtlError{Args: args, Code: "BadJSON", Message: string(firstN(out, 300)), Err: err}
	}
	return nil
}

// CtlID runs Ctl and returns the "id" of the object it printed.
func (w *Lab) CtlID(args ...string) (string, error) {
	var obj struct {
		ID string `json:"id"`
	}
	if err := w.CtlInto(&obj, args...); err != nil {
		return "", err
	}
	if obj.ID == "" {
		return "", &CtlError{Args: args, Code: "NoID", Message: "the printed object has no id"}
	}
	return obj.ID, nil
}

func firstN(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
