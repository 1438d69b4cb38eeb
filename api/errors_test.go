package api

import (
	"errors"
	"io"
	"net/http"
	"testing"
)

func TestErrorUnwrapAndStatus(t *testing.T) {
	cases := []struct {
		code   string
		status int
	}{
		{CodeInvalidParameter, http.StatusBadRequest}, {CodeInvalidSubnet, http.StatusBadRequest},
		{CodeAddressInUse, http.StatusConflict}, {CodeNotFound, http.StatusNotFound},
		{CodeUnauthorized, http.StatusForbidden}, {CodeIncorrectState, http.StatusConflict},
		{CodeDependencyViolation, http.StatusConflict}, {CodeAddressLimit, http.StatusBadRequest},
		{CodeDataPath, http.StatusInternalServerError}, {CodeInternal, http.StatusInternalServerError},
	}
	for _, tc := range cases {
		e := &Error{Code: tc.code, Message: "m", Cause: io.EOF}
		if !errors.Is(e, Sentinel(tc.code)) || !errors.Is(e, io.EOF) {
			t.Errorf("%s: errors.Is misses the sentinel or the cause", tc.code)
		}
		if got := e.HTTPStatus(); got != tc.status {
			t.Errorf("%s: got status %d, want %d", tc.code, got, tc.status)
		}
	}
	if e := AsError(io.EOF); e.Code != CodeInternal || !errors.Is(e, io.EOF) {
		t.Errorf("AsError(io.EOF) = %+v, want InternalError wrapping it", e)
	}
	if got := Path("enis", "eni-1", "a b/c"); got != "/v1/enis/eni-1/a%20b%2Fc" {
		t.Errorf("Path = %q", got)
	}
}
