package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"roam/api"
	"roam/control"
)

// Capturer streams the frames of one port as pcap (roamctl capture).
type Capturer interface {
	// Capture writes a pcap stream of the frames crossing port to w until
	// ctx is done or count frames (0 = no limit) were written.
	Capture(ctx context.Context, port string, count int, w io.Writer) error
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the caller p.
func WithPrincipal(ctx context.Context, p control.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller carried by ctx.
func PrincipalFrom(ctx context.Context) (control.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(control.Principal)
	return p, ok
}

// PeerPrincipal identifies the process at the other end of a unix socket
// connection by its kernel-supplied credentials (SO_PEERCRED).
func PeerPrincipal(c net.Conn) (control.Principal, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return control.Principal{}, fmt.Errorf("peer credentials: %T is not a unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return control.Principal{}, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return control.Principal{}, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return control.Principal{}, fmt.Errorf("getsockopt SO_PEERCRED: %w", cerr)
	}
	return control.Principal{UID: cred.Uid}, nil
}

// Listen creates the control socket at path: a stale socket file is
// replaced, the directory is created (0755), and the socket gets mode 0660
// and, when gid >= 0, that group, so that root and the group's members can
// connect and no one else can.
func Listen(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket dir %s: %w", filepath.Dir(path), err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another roamd is listening", path)
		}
		os.Remove(path)
	}
	old := unix.Umask(0o117)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("chown %s to gid %d: %w", path, gid, err)
		}
	}
	return l, nil
}

// GroupID returns the gid of the named group, or -1 when it does not exist.
func GroupID(name string) int {
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1
	}
	return gid
}

// NewServer returns the HTTP server of the control API. Every connection is
// identified by SO_PEERCRED before any request is read. The uids in admins
// administer roamd as root does (control.Principal.Admin): the daemon
// passes the uid it runs as, so that roamd started by a user without root
// is administered by that user.
func NewServer(h http.Handler, log *slog.Logger, admins ...uint32) *http.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			p, err := PeerPrincipal(c)
			if err != nil {
				log.Warn("control connection without credentials", "err", err)
				return ctx
			}
			p.Admin = slices.Contains(admins, p.UID)
			return WithPrincipal(ctx, p)
		},
	}
}

// API serves the control API over HTTP/JSON.
type API struct {
	svc  *control.Service
	insp control.Inspector
	capt Capturer
	mux  *http.ServeMux
	log  *slog.Logger
}

// New returns the handler of the control API. insp and capt may be nil.
func New(svc *control.Service, insp control.Inspector, capt Capturer, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &API{svc: svc, insp: insp, capt: capt, mux: http.NewServeMux(), log: log}
	a.routes()
	return a
}

// SetInspector replaces the data path inspector.
func (a *API) SetInspector(insp control.Inspector) { a.insp = insp }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

type none struct{}

func (a *API) routes() {
	s := a.svc
	m := a.mux
	m.HandleFunc("GET /v1/subnets", a.read(func(_ control.Scope, r *http.Request) (any, error) { return s.Subnets(), nil }))
	m.HandleFunc("GET /v1/subnets/{id}", a.read(func(_ control.Scope, r *http.Request) (any, error) { return s.Subnet(r.PathValue("id")) }))
	m.HandleFunc("POST /v1/subnets", post(func(p control.Principal, r *http.Request, in api.CreateSubnetInput) (any, error) {
		return s.CreateSubnet(p, in)
	}))
	m.HandleFunc("DELETE /v1/subnets/{id}", post(func(p control.Principal, r *http.Request, _ none) (any, error) {
		return s.DeleteSubnet(p, r.PathValue("id"))
	}))

	m.HandleFunc("GET /v1/security-groups", a.read(func(_ control.Scope, r *http.Request) (any, error) { return s.Groups(), nil }))
	m.HandleFunc("GET /v1/security-groups/{id}", a.read(func(_ control.Scope, r *http.Request) (any, error) { return s.Group(r.PathValue("id")) }))
	m.HandleFunc("POST /v1/security-groups", post(func(p control.Principal, r *http.Request, in api.CreateGroupInput) (any, error) {
		return s.CreateGroup(p, in)
	}))
	m.HandleFunc("DELETE /v1/security-groups/{id}", post(func(p control.Principal, r *http.Request, _ none) (any, error) {
		return s.DeleteGroup(p, r.PathValue("id"))
	}))
	m.HandleFunc("POST /v1/security-groups/{id}/rules", post(func(p control.Principal, r *http.Request, in api.RuleInput) (any, error) {
		return s.AddRule(p, r.PathValue("id"), in)
	}))
	m.HandleFunc("DELETE /v1/security-groups/{id}/rules/{rule}", post(func(p control.Principal, r *http.Request, _ none) (any, error) {
		return s.RemoveRule(p, r.PathValue("id"), r.PathValue("rule"))
	}))

	m.HandleFunc("GET /v1/instances", a.read(func(sc control.Scope, r *http.Request) (any, error) { return sc.Instances(), nil }))
	m.HandleFunc("GET /v1/instances/{name}", a.read(func(sc control.Scope, r *http.Request) (any, error) { return sc.Instance(r.PathValue("name")) }))
	m.HandleFunc("POST /v1/instances", post(func(p control.Principal, r *http.Request, in api.CreateInstanceInput) (any, error) {
		return s.CreateInstance(p, in)
	}))
	m.HandleFunc("DELETE /v1/instances/{name}", post(func(p control.Principal, r *http.Request, _ none) (any, error) {
		return s.TerminateInstance(p, r.PathValue("name"))
	}))

	m.HandleFunc("GET /v1/enis", a.read(func(sc control.Scope, r *http.Request) (any, error) {
		q := r.URL.Query()
		return sc.ENIs(control.ENIFilter{Instance: q.Get("instance_id"), Subnet: q.Get("subnet_id"), PrivateIP: q.Get("private_ip"),
			PublicIP: q.Get("public_ip"), Status: q.Get("status"), Group: q.Get("group")})
	}))
	m.HandleFunc("GET /v1/enis/{id}", a.read(func(sc control.Scope, r *http.Request) (any, error) { return sc.ENI(r.PathValue("id")) }))
	m.HandleFunc("POST /v1/enis", post(func(p control.Principal, r *http.Request, in api.CreateENIInput) (any, error) {
		return s.CreateENI(p, in)
	}))
	m.HandleFunc("DELETE /v1/enis/{id}", post(func(p control.Principal, r *http.Request, _ none) (any, error) {
		return s.DeleteENI(p, r.PathValue("id"))
	}))
	m.HandleFunc("PATCH /v1/enis/{id}", post(func(p control.Principal, r *http.Request, in api.ModifyENIInput) (any, error) {
		return s.ModifyENI(p, r.PathValue("id"), in)
	}))
	m.HandleFunc("POST /v1/enis/{id}/attach", post(func(p control.Principal, r *http.Request, in api.AttachInput) (any, error) {
		return s.Attach(p, r.PathValue("id"), in)
	}))
	m.HandleFunc("POST /v1/enis/{id}/detach", post(func(p control.Principal, r *http.Request, in api.DetachInput) (any, error) {
		return s.Detach(p, r.PathValue("id"), in)
	}))
	m.HandleFunc("POST /v1/enis/{id}/reassign", post(func(p control.Principal, r *http.Request, in api.ReassignInput) (any, error) {
		return s.Reassign(p, r.PathValue("id"), in)
	}))
	m.HandleFunc("POST /v1/enis/{id}/assign-ips", post(func(p control.Principal, r *http.Request, in api.AssignIPsInput) (any, error) {
		return s.AssignIPs(p, r.PathValue("id"), in)
	}))
	m.HandleFunc("POST /v1/enis/{id}/unassign-ips", post(func(p control.Principal, r *http.Request, in api.UnassignIPsInput) (any, error) {
		return s.UnassignIPs(p, r.PathValue("id"), in)
	}))
	m.HandleFunc("POST /v1/enis/{id}/grant", post(func(p control.Principal, r *http.Request, in api.PermissionInput) (any, error) {
		return s.Grant(p, r.PathValue("id"), in)
	}))
	m.HandleFunc("POST /v1/enis/{id}/revoke", post(func(p control.Principal, r *http.Request, in api.PermissionInput) (any, error) {
		return s.Revoke(p, r.PathValue("id"), in)
	}))
	m.HandleFunc("POST /v1/ips/{ip}/reassign", post(func(p control.Principal, r *http.Request, in api.ReassignIPInput) (any, error) {
		return s.ReassignIP(p, r.PathValue("ip"), in)
	}))

	m.HandleFunc("GET /v1/eips", a.read(func(sc control.Scope, r *http.Request) (any, error) { return sc.Addresses(), nil }))
	m.HandleFunc("GET /v1/eips/{ref}", a.read(func(sc control.Scope, r *http.Request) (any, error) { return sc.Address(r.PathValue("ref")) }))
	m.HandleFunc("POST /v1/eips", post(func(p control.Principal, r *http.Request, in api.AllocateInput) (any, error) {
		return s.Allocate(p, in)
	}))
	m.HandleFunc("DELETE /v1/eips/{ref}", post(func(p control.Principal, r *http.Request, _ none) (any, error) {
		return s.Release(p, r.PathValue("ref"))
	}))
	m.HandleFunc("POST /v1/eips/{ref}/associate", post(func(p control.Principal, r *http.Request, in api.AssociateInput) (any, error) {
		return s.Associate(p, r.PathValue("ref"), in)
	}))
	m.HandleFunc("POST /v1/eips/{ref}/disassociate", post(func(p control.Principal, r *http.Request, _ none) (any, error) {
		return s.Disassociate(p, r.PathValue("ref"))
	}))

	m.HandleFunc("GET /v1/events", a.read(func(sc control.Scope, r *http.Request) (any, error) {
		after, err := queryInt(r, "after", 0)
		if err != nil {
			return nil, err
		}
		limit, err := queryInt(r, "limit", 100)
		if err != nil {
			return nil, err
		}
		return sc.Events(uint64(after), int(limit))
	}))
	m.HandleFunc("GET /v1/state", a.read(func(sc control.Scope, r *http.Request) (any, error) { return sc.Dump(), nil }))

	m.HandleFunc("GET /v1/conntrack", a.read(func(sc control.Scope, r *http.Request) (any, error) {
		if a.insp == nil {
			return nil, errorf(api.CodeIncorrectState, "the data path does not expose conntrack")
		}
		flows, err := sc.Flows(a.insp, r.URL.Query().Get("eni_id"))
		if err != nil {
			return nil, err
		}
		if flows == nil {
			flows = []api.Flow{}
		}
		return flows, nil
	}))
	m.HandleFunc("DELETE /v1/conntrack", post(func(p control.Principal, r *http.Request, _ none) (any, error) {
		if a.insp == nil {
			return nil, errorf(api.CodeIncorrectState, "the data path does not expose conntrack")
		}
		id := r.URL.Query().Get("eni_id")
		return s.FlushFlows(p, id, a.insp)
	}))
	m.HandleFunc("GET /v1/stats", a.read(func(sc control.Scope, r *http.Request) (any, error) {
		if a.insp == nil {
			return nil, errorf(api.CodeIncorrectState, "the data path does not expose counters")
		}
		return sc.Stats(a.insp, r.URL.Query().Get("eni_id"))
	}))
	m.HandleFunc("GET /v1/capture", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := PrincipalFrom(r.Context()); !ok {
			writeError(w, errorf(api.CodeUnauthorized, "the caller's credentials could not be read"))
			return
		}
		p, _ := PrincipalFrom(r.Context())
		if err := s.AuthorizeCapture(p); err != nil {
			writeError(w, err)
			return
		}
		if a.capt == nil {
			writeError(w, errorf(api.CodeIncorrectState, "the data path does not support capture"))
			return
		}
		port := r.URL.Query().Get("port")
		count, err := queryInt(r, "count", 0)
		if err != nil {
			writeError(w, err)
			return
		}
		spec, err := s.ResolvePort(port)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
		fw := &flushWriter{w: w}
		err = a.capt.Capture(r.Context(), spec, int(count), fw)
		switch {
		case err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		case !fw.wrote:
			writeError(w, err)
		default:
			a.log.Warn("capture", "port", port, "err", err)
		}
	})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(api.CodeNotFound, "no API route %s %s", r.Method, r.URL.Path))
	})
}

type flushWriter struct {
	w     http.ResponseWriter
	wrote bool
}

func (f *flushWriter) Write(b []byte) (int, error) {
	f.wrote = true
	n, err := f.w.Write(b)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

func queryInt(r *http.Request, key string, def int64) (int64, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, invalid(key, v, "want a non-negative integer")
	}
	return n, nil
}

// read serves a read: fn gets the state as the caller may read it.
func (a *API) read(fn func(sc control.Scope, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		if !ok {
			writeError(w, errorf(api.CodeUnauthorized, "the caller's credentials could not be read"))
			return
		}
		v, err := fn(a.svc.As(p), r)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// maxBody bounds a request body.
const maxBody = 1 << 20

func post[In any](fn func(p control.Principal, r *http.Request, in In) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		if !ok {
			writeError(w, errorf(api.CodeUnauthorized, "the caller's credentials could not be read"))
			return
		}
		var in In
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			writeError(w, invalid("body", "", "cannot read: "+err.Error()))
			return
		}
		if len(body) > maxBody {
			writeError(w, invalid("body", "", "larger than 1 MiB"))
			return
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				writeError(w, decodeError(err))
				return
			}
		}
		v, err := fn(p, r, in)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func decodeError(err error) *api.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return invalid(te.Field, te.Value, "wrong type, want "+te.Type.String())
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return invalid(strings.Trim(f, `"`), "", "unknown field")
	}
	return invalid("body", "", "not valid JSON: "+msg)
}

func writeError(w http.ResponseWriter, err error) {
	e := api.AsError(err)
	writeJSON(w, e.HTTPStatus(), api.ErrorBody{Error: e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func errorf(code, format string, args ...any) *api.Error {
	return &api.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(field string, value any, why string) *api.Error {
	return errorf(api.CodeInvalidParameter, "%s %q: %s", field, fmt.Sprint(value), why)
}
