package main

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestPrivilegedTwoUIDs runs roamctl as root and as nobody (uid 65534, a
// member of the socket's group) against one roamd: the daemon identifies
// each by SO_PEERCRED and applies the records' permission lists. A uid
// outside the group cannot even connect.
func TestPrivilegedTwoUIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run roamctl under other uids")
	}
	const nobody = 65534
	d := newDaemon(t, "--socket-group", "nogroup")
	fi, err := os.Stat(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != nobody {
		t.Fatalf("got socket mode %o gid %d, want 660 and nogroup", fi.Mode().Perm(), st.Gid)
	}
	sub := d.ok("subnet", "create", "10.3.0.0/24")["id"].(string)
	d.ok("instance", "create", "vm1", "--port", "tap:u1")
	d.ok("instance", "create", "vm2", "--port", "tap:u2")
	rootENI := d.ok("eni", "create", "--subnet", sub)["id"].(string)
	d.ok("eni", "attach", rootENI, "--instance", "vm1")

	var mine string
	steps := []struct {
		name string
		uid  uint32
		args func() []string
		want string
	}{
		{"nobody creates a record", nobody, func() []string { return []string{"eni", "create", "--subnet", sub} }, ""},
		{"nobody may not move root's record", nobody, func() []string { return []string{"eni", "reassign", rootENI, "--instance", "vm2"} }, "Unauthorized"},
		{"nobody may not move it by ip", nobody, func() []string { return []string{"ip", "reassign", "10.3.0.2", "--instance", "vm2"} }, "Unauthorized"},
		{"nobody may not create subnets", nobody, func() []string { return []string{"subnet", "create", "10.4.0.0/24"} }, "Unauthorized"},
		{"nobody may not grant", nobody, func() []string { return []string{"eni", "grant", rootENI, "--user", "nobody", "--permission", "owner"} }, "Unauthorized"},
		{"root grants attach", 0, func() []string {
			return []string{"eni", "grant", rootENI, "--user", "nobody", "--permission", "attach"}
		}, ""},
		{"attach alone does not allow a move", nobody, func() []string { return []string{"eni", "reassign", rootENI, "--instance", "vm2"} }, "Unauthorized"},
		{"root grants detach", 0, func() []string { return []string{"eni", "grant", rootENI, "--uid", "65534", "--permission", "detach"} }, ""},
		{"nobody moves root's record", nobody, func() []string { return []string{"eni", "reassign", rootENI, "--instance", "vm2"} }, ""},
		{"nobody may not delete it", nobody, func() []string { return []string{"eni", "delete", rootENI} }, "Unauthorized"},
		{"nobody attaches its own record", nobody, func() []string { return []string{"eni", "attach", mine, "--instance", "vm1"} }, ""},
		{"root revokes", 0, func() []string { return []string{"eni", "revoke", rootENI, "--uid", "65534", "--permission", "detach"} }, ""},
		{"nobody may not move it back", nobody, func() []string { return []string{"eni", "reassign", rootENI, "--instance", "vm1"} }, "Unauthorized"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := d.ctl(s.uid, s.args()...)
			var out map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("stdout %q: %v (stderr %q)", r.stdout, err, r.stderr)
			}
			if s.want == "" {
				if r.code != 0 {
					t.Fatalf("got exit %d: %s", r.code, r.stdout)
				}
				if s.name == "nobody creates a record" {
					mine = out["id"].(string)
					if owners := field(out, "permissions", "owners"); !strings.Contains(jsonOf(owners), "65534") {
						t.Errorf("got owners %v, want [65534]", owners)
					}
				}
				return
			}
			if r.code == 0 || field(out, "error", "code") != s.want {
				t.Fatalf("got exit %d %s, want %s", r.code, r.stdout, s.want)
			}
			if msg, _ := field(out, "error", "message").(string); !strings.Contains(msg, "65534") {
				t.Errorf("got message %q, want it to name uid 65534", msg)
			}
		})
	}
	t.Run("audit log names both uids", func(t *testing.T) {
		evs := d.list("events", "--limit", "1000")
		seen := map[float64]bool{}
		for _, e := range evs {
			if e["operation"] == "ReassignNetworkInterface" {
				seen[e["uid"].(float64)] = true
			}
		}
		if !seen[nobody] {
			t.Errorf("no ReassignNetworkInterface by uid %d in the audit log", nobody)
		}
	})
	t.Run("nobody reads only what it owns or was granted", func(t *testing.T) {
		hidden := d.ok("eni", "create", "--subnet", sub)["id"].(string)
		asNobody := func(args ...string) (string, result) {
			r := d.ctl(nobody, args...)
			var m map[string]any
			json.Unmarshal([]byte(r.stdout), &m)
			code, _ := field(m, "error", "code").(string)
			return code, r
		}
		r := d.ctl(nobody, "eni", "list")
		var l []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || r.code != 0 {
			t.Fatalf("eni list: exit %d %s", r.code, r.stdout)
		}
		var ids []string
		for _, e := range l {
			ids = append(ids, e["id"].(string))
		}
		if want := []string{mine, rootENI}; !slices.Equal(ids, slices.Sorted(slices.Values(want))) {
			t.Errorf("eni list as nobody: %v, want its own and the one it may attach %v", ids, want)
		}
		for _, args := range [][]string{{"eni", "show", hidden}, {"stats", "--eni", hidden}, {"conntrack", "list", "--eni", hidden}} {
			if code, r := asNobody(args...); code != "NotFound" {
				t.Errorf("%v as nobody: exit %d %s, want NotFound", args, r.code, r.stdout)
			}
		}
		if _, r := asNobody("stats"); !strings.Contains(r.stdout, `"uid:65534"`) {
			t.Errorf("stats as nobody: %s, want the sum of its records (uid:65534)", r.stdout)
		}
		r = d.ctl(nobody, "events", "--limit", "1000")
		var evs []map[string]any
		json.Unmarshal([]byte(r.stdout), &evs)
		if len(evs) == 0 {
			t.Errorf("events as nobody: %s, want its own", r.stdout)
		}
		for _, e := range evs {
			if e["target"] == hidden || e["uid"].(float64) != nobody && e["target"] != rootENI && e["target"] != mine {
				t.Errorf("events as nobody include %v", e)
			}
		}
	})
	t.Run("a uid outside the group cannot connect", func(t *testing.T) {
		r := d.ctl(65533, "eni", "list")
		if r.code == 0 || !strings.Contains(r.stdout, "ConnectionFailed") || !strings.Contains(r.stdout, "permission denied") {
			t.Errorf("got exit %d %s, want ConnectionFailed: permission denied", r.code, r.stdout)
		}
	})
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
