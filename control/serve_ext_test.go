package control_test

import (
	"testing"

	"roam/control"
	"roam/internal/apiserver"
)

func init() {
	control.ServeAPI = func(t testing.TB, svc *control.Service, socket string, gid int) func() {
		t.Helper()
		ln, err := apiserver.Listen(socket, gid)
		if err != nil {
			t.Fatal(err)
		}
		srv := apiserver.NewServer(apiserver.New(svc, nil, nil, nil), nil)
		go srv.Serve(ln)
		return func() { srv.Close() }
	}
}
