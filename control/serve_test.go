package control

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"roam/api"
)

// ServeAPI serves svc's HTTP API on a unix socket whose group is gid and
// returns a function that stops it. It is set by serve_ext_test.go
// (package control_test): the server (internal/apiserver) imports control,
// so only the external test package can reach it.
var ServeAPI func(t testing.TB, svc *Service, socket string, gid int) (stop func())

// apiServer serves svc on a unix socket in a world-traversable directory.
type apiServer struct {
	dir, socket string
	client      *api.Client
}

func newAPIServer(t testing.TB, svc *Service, gid int) *apiServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "roamctl-api-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	a := &apiServer{dir: dir, socket: filepath.Join(dir, "roamd.sock")}
	stop := ServeAPI(t, svc, a.socket, gid)
	a.client = api.NewClient(a.socket)
	t.Cleanup(func() {
		a.client.Close()
		stop()
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

// Path and ErrDataPath are api's, under the names control's tests use.
var (
	Path        = api.Path
	ErrDataPath = api.ErrDataPath
)
