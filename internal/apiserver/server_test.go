package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"roam/api"
	"roam/control"
)

// TestMain doubles as a client process: with ROAM_CONTROL_HELPER set, the
// test binary (re-executed under another uid) makes one API call and prints
// the outcome, so that tests reach the server through SO_PEERCRED from a
// real process of that uid.
func TestMain(m *testing.M) {
	if os.Getenv("ROAM_CONTROL_HELPER") != "" {
		os.Exit(helper())
	}
	os.Exit(m.Run())
}

type helperResult struct {
	OK    bool            `json:"ok"`
	Error *api.Error      `json:"error,omitempty"`
	Conn  string          `json:"conn,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
}

func helper() int {
	c := api.NewClient(os.Getenv("ROAM_SOCKET"))
	var in any
	if b := os.Getenv("ROAM_BODY"); b != "" {
		in = json.RawMessage(b)
	}
	var out json.RawMessage
	err := c.Do(context.Background(), os.Getenv("ROAM_METHOD"), os.Getenv("ROAM_PATH"), in, &out)
	r := helperResult{OK: err == nil, Body: out}
	if err != nil {
		if e, ok := err.(*api.Error); ok {
			r.Error = e
		} else {
			r.Conn = err.Error()
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// apiServer serves svc on a unix socket in a world-traversable directory;
// the socket's group is gid.
type apiServer struct {
	dir, socket string
	client      *api.Client
	srv         *http.Server
}

func newAPIServer(t testing.TB, svc *control.Service, gid int) *apiServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "roamctl-api-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	a := &apiServer{dir: dir, socket: filepath.Join(dir, "roamd.sock")}
	ln, err := Listen(a.socket, gid)
	if err != nil {
		t.Fatal(err)
	}
	a.srv = NewServer(New(svc, nil, nil, nil), nil)
	go a.srv.Serve(ln)
	a.client = api.NewClient(a.socket)
	t.Cleanup(func() {
		a.client.Close()
		a.srv.Close()
		os.RemoveAll(dir)
	})
	return a
}

func (a *apiServer) do(t testing.TB, method, path string, in, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return a.client.Do(ctx, method, path, in, out)
}

// asUID makes one API call from a process running as uid:gid.
func (a *apiServer) asUID(t *testing.T, uid, gid uint32, method, path string, body any) helperResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a private build directory: copy it where
	// the other uid can run it.
	bin := filepath.Join(a.dir, "helper")
	if _, err := os.Stat(bin); err != nil {
		data, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(body)
	if body == nil {
		b = nil
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"ROAM_CONTROL_HELPER=1", "ROAM_SOCKET=" + a.socket, "ROAM_METHOD=" + method, "ROAM_PATH=" + path, "ROAM_BODY=" + string(b)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper as uid %d: %v: %s", uid, err, out)
	}
	var r helperResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	return r
}

// TestPrivilegedPeerCredentials drives the API from two real uids: root
// and nobody (65534, in the socket's group), and checks that a third uid
// outside the group cannot connect at all.
func TestPrivilegedPeerCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients under other uids")
	}
	const nobody, nogroup, stranger = 65534, 65534, 65533
	svc := newService(t)
	w := buildWorld(t, svc)
	a := newAPIServer(t, svc, nogroup)

	fi, err := os.Stat(a.socket)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if got := fi.Mode().Perm(); got != 0o660 || st.Gid != nogroup {
		t.Fatalf("got socket mode %o gid %d, want 660 gid %d", got, st.Gid, nogroup)
	}

	var mine api.ENI
	steps := []struct {
		name   string
		uid    uint32
		method string
		path   func() string
		body   func() any
		want   string // error code, "" for success
		check  func(t *testing.T, r helperResult)
	}{
		{name: "nobody creates a record it owns", uid: nobody, method: "POST", path: func() string { return "/v1/enis" },
			body: func() any { return api.CreateENIInput{SubnetID: w.subA} },
			check: func(t *testing.T, r helperResult) {
				json.Unmarshal(r.Body, &mine)
				if len(mine.Permissions.Owners) != 1 || mine.Permissions.Owners[0] != nobody {
					t.Errorf("got owners %v, want [%d]", mine.Permissions.Owners, nobody)
				}
			}},
		{name: "nobody attaches its record", uid: nobody, method: "POST", path: func() string { return api.Path("enis", mine.ID, "attach") },
			body: func() any { return api.AttachInput{InstanceID: "vm1"} }},
		{name: "nobody may not detach root's record", uid: nobody, method: "POST", path: func() string { return api.Path("enis", w.eniA, "detach") },
			body: func() any { return api.DetachInput{} }, want: api.CodeUnauthorized},
		{name: "nobody may not reassign root's record", uid: nobody, method: "POST", path: func() string { return api.Path("enis", w.eniA, "reassign") },
			body: func() any { return api.ReassignInput{InstanceID: "vm2"} }, want: api.CodeUnauthorized},
		{name: "nobody may not create a subnet", uid: nobody, method: "POST", path: func() string { return "/v1/subnets" },
			body: func() any { return api.CreateSubnetInput{CIDR: "10.50.0.0/24"} }, want: api.CodeUnauthorized},
		{name: "nobody may not grant itself", uid: nobody, method: "POST", path: func() string { return api.Path("enis", w.eniA, "grant") },
			body: func() any { return api.PermissionInput{Permission: api.PermDetach, UID: nobody} }, want: api.CodeUnauthorized},
		{name: "root grants detach and attach", uid: 0, method: "POST", path: func() string { return api.Path("enis", w.eniA, "grant") },
			body: func() any { return api.PermissionInput{Permission: api.PermDetach, UID: nobody} }},
		{name: "root grants attach", uid: 0, method: "POST", path: func() string { return api.Path("enis", w.eniA, "grant") },
			body: func() any { return api.PermissionInput{Permission: api.PermAttach, UID: nobody} }},
		{name: "nobody now reassigns root's record", uid: nobody, method: "POST", path: func() string { return api.Path("enis", w.eniA, "reassign") },
			body: func() any { return api.ReassignInput{InstanceID: "vm2"} }},
		{name: "nobody still may not delete it", uid: nobody, method: "DELETE", path: func() string { return api.Path("enis", w.eniA) },
			want: api.CodeUnauthorized},
		{name: "nobody reads", uid: nobody, method: "GET", path: func() string { return "/v1/enis" }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var body any
			if s.body != nil {
				body = s.body()
			}
			var r helperResult
			if s.uid == 0 {
				var out json.RawMessage
				err := a.do(t, s.method, s.path(), body, &out)
				r = helperResult{OK: err == nil, Body: out}
				if err != nil {
					r.Error = api.AsError(err)
				}
			} else {
				r = a.asUID(t, s.uid, nogroup, s.method, s.path(), body)
			}
			if r.Conn != "" {
				t.Fatalf("connection failed: %s", r.Conn)
			}
			got := ""
			if r.Error != nil {
				got = r.Error.Code
			}
			if got != s.want {
				t.Fatalf("got %q (%v), want %q", got, r.Error, s.want)
			}
			if s.want == api.CodeUnauthorized && !strings.Contains(r.Error.Message, fmt.Sprint(s.uid)) {
				t.Errorf("got message %q, want it to name uid %d", r.Error.Message, s.uid)
			}
			if s.check != nil {
				s.check(t, r)
			}
		})
	}
	t.Run("audit names the uid", func(t *testing.T) {
		evs := ok(svc.Events(0, 0))
		found := false
		for _, e := range evs {
			if e.UID == nobody && e.Operation == "ReassignNetworkInterface" && e.Result == "ok" {
				found = true
			}
		}
		if !found {
			t.Errorf("no ok ReassignNetworkInterface event by uid %d in %+v", nobody, evs)
		}
	})
	t.Run("uid outside the group cannot connect", func(t *testing.T) {
		r := a.asUID(t, stranger, stranger, "GET", "/v1/enis", nil)
		if r.OK || !strings.Contains(r.Conn, "permission denied") {
			t.Errorf("got %+v, want a connection refused with permission denied", r)
		}
	})
}

// TestAPIErrors checks the HTTP layer's own refusals: each names the field.
func TestAPIErrors(t *testing.T) {
	svc := newService(t)
	buildWorld(t, svc)
	a := newAPIServer(t, svc, -1)
	cases := []struct {
		name, method, path, body string
		want, mention            string
	}{
		{"unknown field", "POST", "/v1/subnets", `{"cidr":"10.9.0.0/24","colour":"red"}`, api.CodeInvalidParameter, "colour"},
		{"wrong type", "POST", "/v1/subnets", `{"cidr":"10.9.0.0/24","mtu":"big"}`, api.CodeInvalidParameter, "mtu"},
		{"bad json", "POST", "/v1/subnets", `{"cidr":`, api.CodeInvalidParameter, "JSON"},
		{"unknown route", "GET", "/v1/nothing", ``, api.CodeNotFound, "/v1/nothing"},
		{"unknown record", "GET", "/v1/enis/eni-00000000", ``, api.CodeNotFound, "eni-00000000"},
		{"bad filter", "GET", "/v1/enis?private_ip=nope", ``, api.CodeInvalidParameter, "private_ip"},
		{"bad events limit", "GET", "/v1/events?limit=-1", ``, api.CodeInvalidParameter, "limit"},
		{"no inspector", "GET", "/v1/conntrack", ``, api.CodeIncorrectState, "conntrack"},
	}
	// A plain HTTP client on the socket: these bodies are not JSON, which
	// api.Client would refuse to send.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", a.socket)
	}}}
	defer hc.CloseIdleConnections()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://roamd"+tc.path, strings.NewReader(tc.body))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			var eb api.ErrorBody
			if err := json.Unmarshal(data, &eb); err != nil || eb.Error == nil {
				t.Fatalf("got body %s, want {\"error\": ...}", data)
			}
			if eb.Error.Code != tc.want || !strings.Contains(eb.Error.Message, tc.mention) {
				t.Errorf("got %s %q, want %s mentioning %q", eb.Error.Code, eb.Error.Message, tc.want, tc.mention)
			}
			if resp.StatusCode == http.StatusOK {
				t.Errorf("got status 200 for an error")
			}
		})
	}
}
