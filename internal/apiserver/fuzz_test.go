package apiserver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"roam/api"
	"roam/control"
)

// FuzzAPIRequest sends arbitrary request bodies, as root or as another
// user, to every route of the control API that takes one. The server must
// not panic; it answers 200 with JSON, or an error status with the JSON
// error shape ({"error": {"code", "message"}}); a refused request changes
// nothing (the state dump is the same before and after).
func FuzzAPIRequest(f *testing.F) {
	routes := []struct{ method, path string }{
		{"POST", "/v1/subnets"},
		{"DELETE", "/v1/subnets/{subA}"},
		{"POST", "/v1/security-groups"},
		{"POST", "/v1/security-groups/{sg1}/rules"},
		{"POST", "/v1/instances"},
		{"DELETE", "/v1/instances/vm2"},
		{"POST", "/v1/enis"},
		{"PATCH", "/v1/enis/{eniA}"},
		{"POST", "/v1/enis/{eniA}/attach"},
		{"POST", "/v1/enis/{eniC}/attach"},
		{"POST", "/v1/enis/{eniA}/detach"},
		{"POST", "/v1/enis/{eniA}/reassign"},
		{"POST", "/v1/enis/{eniB}/assign-ips"},
		{"POST", "/v1/enis/{eniB}/unassign-ips"},
		{"POST", "/v1/enis/{eniC}/grant"},
		{"POST", "/v1/enis/{eniC}/revoke"},
		{"POST", "/v1/ips/10.0.0.20/reassign"},
		{"POST", "/v1/eips"},
		{"POST", "/v1/eips/{eip2}/associate"},
		{"POST", "/v1/eips/{eip1}/disassociate"},
		{"DELETE", "/v1/conntrack"},
	}
	seeds := []string{
		`{}`, ``, `null`, `[]`, `"x"`, `{"cidr":"10.9.0.0/24"}`, `{"cidr":"10.9.0.0/33"}`, `{"name":"db","description":"x"}`,
		`{"protocol":"tcp","from_port":22,"to_port":22,"cidr":"0.0.0.0/0","direction":"ingress"}`,
		`{"name":"vm9","ports":["tap:vm9a","stream:/run/x.sock"]}`, `{"subnet_id":"subnet-00000000","private_ip":"10.0.0.77"}`,
		`{"instance_id":"vm1","device_index":1}`, `{"instance_id":"vm2","device_index":-1}`, `{"force":true}`,
		`{"private_ips":["10.0.0.30","10.0.0.31"],"allow_reassignment":true}`, `{"permission":"attach","uid":3000}`,
		`{"instance_id":"vm3"}`, `{"eni_id":"eni-00000000","allow_reassociation":true}`, `{"flow_budget":-1}`,
		`{"source_dest_check":false,"security_groups":["sg-00000000"],"tags":{"a":"b"}}`, `{"unknown":1}`, `{"cidr":1e999}`,
		strings.Repeat(`[`, 10000),
	}
	for i, s := range seeds {
		f.Add(uint8(i%len(routes)), false, []byte(s))
		f.Add(uint8((i*7+3)%len(routes)), true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, route uint8, asUser bool, body []byte) {
		svc := newService(t)
		w := buildWorld(t, svc)
		srv := New(svc, nil, nil, nil)
		rt := routes[int(route)%len(routes)]
		path := strings.NewReplacer("{subA}", w.subA, "{sg1}", w.sg1, "{eniA}", w.eniA, "{eniB}", w.eniB, "{eniC}", w.eniC,
			"{eip1}", w.eip1, "{eip2}", w.eip2).Replace(rt.path)
		p := control.Root
		if asUser {
			p = control.Principal{UID: alice}
		}
		before := dumpJSON(t, svc)
		req := httptest.NewRequest(rt.method, path, bytes.NewReader(body)).WithContext(WithPrincipal(t.Context(), p))
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: status %d, body not JSON: %q", rt.method, path, rec.Code, rec.Body.String())
		}
		if rec.Code == http.StatusOK {
			return
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: status %d: %s", rt.method, path, body, rec.Code, rec.Body.String())
		}
		var e struct {
			Error *api.Error `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s %s: status %d, error shape wrong: %s", rt.method, path, rec.Code, rec.Body.String())
		}
		if after := dumpJSON(t, svc); after != before {
			t.Fatalf("%s %s %q refused (%s) but the state changed", rt.method, path, body, e.Error.Message)
		}
	})
}
