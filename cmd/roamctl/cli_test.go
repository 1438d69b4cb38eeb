package main

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// step is one roamctl invocation of a script; later steps use the ids that
// earlier ones captured.
type step struct {
	name  string
	args  func(v map[string]string) []string
	want  string // error code, "" for success
	check func(t *testing.T, v map[string]string, out any)
}

func args(a ...string) func(v map[string]string) []string {
	return func(v map[string]string) []string {
		out := make([]string, len(a))
		for i, s := range a {
			if strings.HasPrefix(s, "$") {
				s = v[s[1:]]
			}
			out[i] = s
		}
		return out
	}
}

func capture(key string, check func(t *testing.T, v map[string]string, m map[string]any)) func(t *testing.T, v map[string]string, out any) {
	return func(t *testing.T, v map[string]string, out any) {
		m, ok := out.(map[string]any)
		if !ok {
			t.Fatalf("got %T, want an object", out)
		}
		id, _ := m["id"].(string)
		if id == "" {
			t.Fatalf("got no id in %v", m)
		}
		if key != "" {
			v[key] = id
		}
		if check != nil {
			check(t, v, m)
		}
	}
}

func field(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			i := 0
			for _, ch := range p {
				i = i*10 + int(ch-'0')
			}
			if i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

func expect(t *testing.T, m map[string]any, want any, path ...string) {
	t.Helper()
	got := field(m, path...)
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("%s: got %s, want %s", strings.Join(path, "."), gb, wb)
	}
}

func listLen(n int) func(t *testing.T, v map[string]string, out any) {
	return func(t *testing.T, v map[string]string, out any) {
		l, ok := out.([]any)
		if !ok || len(l) != n {
			t.Fatalf("got %v, want a list of %d", out, n)
		}
		for _, x := range l {
			if m, ok := x.(map[string]any); !ok || m["id"] == nil {
				t.Errorf("list item %v has no id", x)
			}
		}
	}
}

// TestCLI runs every command of roamctl against a real roamd, in json mode,
// and checks the output shape, the exit status and the error codes.
func TestCLI(t *testing.T) {
	d := newDaemon(t)
	v := map[string]string{}
	steps := []step{
		{name: "subnet create", args: args("subnet", "create", "10.0.0.0/24", "--dns", "10.0.0.2"), check: capture("sub", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, "10.0.0.1", "gateway")
			expect(t, m, "10.0.0.0/24", "cidr")
		})},
		{name: "subnet create overlap", args: args("subnet", "create", "10.0.0.0/25"), want: "InvalidSubnet"},
		{name: "subnet create bad cidr", args: args("subnet", "create", "10.0.0.0/33"), want: "InvalidSubnet"},
		{name: "subnet list", args: args("subnet", "list"), check: listLen(1)},
		{name: "subnet show", args: args("subnet", "show", "$sub"), check: capture("", nil)},
		{name: "sg create", args: args("sg", "create", "--name", "web"), check: capture("sg", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, []any{}, "ingress")
			expect(t, m, "all", "egress", "0", "protocol")
			expect(t, m, "0.0.0.0/0", "egress", "0", "cidr")
		})},
		{name: "sg rule add", args: args("sg", "rule", "add", "$sg", "--direction", "ingress", "--protocol", "tcp", "--port", "22"),
			check: func(t *testing.T, v map[string]string, out any) {
				m := out.(map[string]any)
				expect(t, m, float64(22), "ingress", "0", "from_port")
				v["rule"], _ = field(m, "ingress", "0", "id").(string)
			}},
		{name: "sg rule add bad port", args: args("sg", "rule", "add", "$sg", "--protocol", "tcp", "--port", "70000"), want: "InvalidParameter"},
		{name: "sg rule remove", args: args("sg", "rule", "remove", "$sg", "$rule"), check: capture("", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, []any{}, "ingress")
		})},
		{name: "sg list", args: args("sg", "list"), check: listLen(1)},
		{name: "sg show by name", args: args("sg", "show", "web"), check: capture("", nil)},
		{name: "instance create", args: args("instance", "create", "vm1", "--port", "tap:vm1a", "--port", "stream:/run/roam-test/vm1.sock"),
			check: capture("", func(t *testing.T, v map[string]string, m map[string]any) {
				expect(t, m, "vm1", "id")
				expect(t, m, "up", "ports", "1", "status")
				expect(t, m, float64(1), "ports", "1", "device_index")
			})},
		{name: "instance create second", args: args("instance", "create", "vm2", "--port", "tap:vm2a@ns2")},
		{name: "instance create bad spec", args: args("instance", "create", "vm3", "--port", "bogus"), want: "InvalidParameter"},
		{name: "instance create no port", args: args("instance", "create", "vm3"), want: "InvalidParameter"},
		{name: "instance list", args: args("instance", "list"), check: listLen(2)},
		{name: "eni create", args: args("eni", "create", "--subnet", "$sub", "--sg", "web", "--secondary-count", "1", "--tag", "role=db"),
			check: capture("eni", func(t *testing.T, v map[string]string, m map[string]any) {
				expect(t, m, []any{"10.0.0.2", "10.0.0.3"}, "private_ips")
				expect(t, m, "available", "status")
				expect(t, m, []any{}, "attachments")
				expect(t, m, true, "source_dest_check")
				expect(t, m, "db", "tags", "role")
				if mac, _ := m["mac"].(string); len(mac) != 17 {
					t.Errorf("got mac %q", mac)
				}
				if !strings.HasPrefix(v["eni"], "eni-") || len(v["eni"]) != 12 {
					t.Errorf("got id %q, want eni- and 8 hex digits", v["eni"])
				}
			})},
		{name: "sg delete in use", args: args("sg", "delete", "$sg"), want: "DependencyViolation"},
		{name: "subnet delete in use", args: args("subnet", "delete", "$sub"), want: "DependencyViolation"},
		{name: "eni create taken ip", args: args("eni", "create", "--subnet", "$sub", "--private-ip", "10.0.0.2"), want: "AddressInUse"},
		{name: "eni create unknown subnet", args: args("eni", "create", "--subnet", "subnet-00000000"), want: "NotFound"},
		{name: "eni list", args: args("eni", "list"), check: listLen(1)},
		{name: "eni list filter", args: args("eni", "list", "--status", "in-use"), check: listLen(0)},
		{name: "eni show", args: args("eni", "show", "$eni"), check: capture("", nil)},
		{name: "eni show missing arg", args: args("eni", "show"), want: "InvalidParameter"},
		{name: "eni attach", args: args("eni", "attach", "$eni", "--instance", "vm1"), check: capture("", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, "in-use", "status")
			expect(t, m, "tap:vm1a", "attachments", "0", "port")
			v["att"], _ = field(m, "attachments", "0", "id").(string)
		})},
		{name: "eni attach again", args: args("eni", "attach", "$eni", "--instance", "vm1"), want: "IncorrectState"},
		{name: "eni delete attached", args: args("eni", "delete", "$eni"), want: "IncorrectState"},
		{name: "eni reassign", args: args("eni", "reassign", "$eni", "--instance", "vm2"), check: capture("", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, v["att"], "attachments", "0", "id")
			expect(t, m, "vm2", "attachments", "0", "instance_id")
			expect(t, m, "tap:vm2a@ns2", "attachments", "0", "port")
		})},
		{name: "eni reassign unknown instance", args: args("eni", "reassign", "$eni", "--instance", "nope"), want: "NotFound"},
		{name: "eni list by instance", args: args("eni", "list", "--instance", "vm2"), check: listLen(1)},
		{name: "ip reassign holder", args: args("ip", "reassign", "10.0.0.3", "--instance", "vm1"), check: capture("", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, v["eni"], "id")
			expect(t, m, "vm1", "attachments", "0", "instance_id")
		})},
		{name: "ip reassign creates", args: args("ip", "reassign", "10.0.0.99", "--instance", "vm2"), check: capture("eni2", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, "10.0.0.99", "private_ip")
			expect(t, m, "in-use", "status")
		})},
		{name: "ip reassign outside", args: args("ip", "reassign", "10.9.0.1", "--instance", "vm2"), want: "InvalidSubnet"},
		{name: "eni assign-ip", args: args("eni", "assign-ip", "$eni", "--ip", "10.0.0.50"), check: capture("", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, "10.0.0.50", "private_ips", "2")
		})},
		{name: "eni assign-ip taken", args: args("eni", "assign-ip", "$eni", "--ip", "10.0.0.99"), want: "AddressInUse"},
		{name: "eni unassign-ip", args: args("eni", "unassign-ip", "$eni", "--ip", "10.0.0.50")},
		{name: "eni modify", args: args("eni", "modify", "$eni", "--source-dest-check=false", "--description", "db"),
			check: capture("", func(t *testing.T, v map[string]string, m map[string]any) {
				expect(t, m, false, "source_dest_check")
				expect(t, m, "db", "description")
			})},
		{name: "eni grant", args: args("eni", "grant", "$eni", "--uid", "1234", "--permission", "attach"),
			check: capture("", func(t *testing.T, v map[string]string, m map[string]any) {
				expect(t, m, []any{float64(1234)}, "permissions", "attachers")
			})},
		{name: "eni revoke", args: args("eni", "revoke", "$eni", "--user", "1234", "--permission", "attach")},
		{name: "eni grant bad permission", args: args("eni", "grant", "$eni", "--uid", "1", "--permission", "fly"), want: "InvalidParameter"},
		{name: "eip allocate", args: args("eip", "allocate"), check: capture("eip", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, "198.51.100.2", "public_ip")
		})},
		{name: "eip associate", args: args("eip", "associate", "$eip", "--eni", "$eni"), check: capture("", func(t *testing.T, v map[string]string, m map[string]any) {
			expect(t, m, v["eni"], "eni_id")
			expect(t, m, "10.0.0.2", "private_ip")
		})},
		{name: "eip associate elsewhere", args: args("eip", "associate", "$eip", "--eni", "$eni2"), want: "AddressInUse"},
		{name: "eip reassociate", args: args("eip", "associate", "198.51.100.2", "--eni", "$eni2", "--allow-reassociation")},
		{name: "eip release associated", args: args("eip", "release", "$eip"), want: "DependencyViolation"},
		{name: "eip disassociate", args: args("eip", "disassociate", "$eip")},
		{name: "eip list", args: args("eip", "list"), check: listLen(1)},
		{name: "eip release", args: args("eip", "release", "$eip")},
		{name: "conntrack list", args: args("conntrack", "list", "--eni", "$eni"), check: listLen(0)},
		{name: "conntrack flush", args: args("conntrack", "flush"), check: capture("", nil)},
		{name: "stats", args: args("stats"), check: capture("", func(t *testing.T, v map[string]string, m map[string]any) { expect(t, m, "global", "id") })},
		{name: "stats eni", args: args("stats", "--eni", "$eni"), check: capture("", nil)},
		{name: "stats unknown eni", args: args("stats", "--eni", "eni-00000000"), want: "NotFound"},
		{name: "eni detach", args: args("eni", "detach", "$eni")},
		{name: "eni detach not attached", args: args("eni", "detach", "$eni"), want: "IncorrectState"},
		{name: "eni detach force", args: args("eni", "detach", "$eni2", "--force")},
		{name: "eni attach bad index", args: args("eni", "attach", "$eni2", "--instance", "vm2", "--device-index", "5"), want: "InvalidParameter"},
		{name: "eni attach again", args: args("eni", "attach", "$eni2", "--instance", "vm2", "--device-index", "0", "--delete-on-termination")},
		{name: "eni unassign primary", args: args("eni", "unassign-ip", "$eni", "--ip", "10.0.0.2"), want: "InvalidParameter"},
		{name: "eni modify nothing", args: args("eni", "modify", "$eni"), want: "InvalidParameter"},
		{name: "eni modify unknown group", args: args("eni", "modify", "$eni", "--sg", "nosuch"), want: "NotFound"},
		{name: "eip release unknown", args: args("eip", "release", "eipalloc-00000000"), want: "NotFound"},
		{name: "eip allocate outside pool", args: args("eip", "allocate", "--address", "192.0.2.1"), want: "InvalidParameter"},
		{name: "instance terminate unknown", args: args("instance", "terminate", "nope"), want: "NotFound"},
		{name: "conntrack flush unknown eni", args: args("conntrack", "flush", "--eni", "eni-00000000"), want: "NotFound"},
		{name: "eni delete", args: args("eni", "delete", "$eni")},
		{name: "instance terminate", args: args("instance", "terminate", "vm2")},
		{name: "instance show terminated", args: args("instance", "show", "vm2"), want: "NotFound"},
		{name: "delete-on-termination deleted the record", args: args("eni", "show", "$eni2"), want: "NotFound"},
		{name: "subnet delete", args: args("subnet", "delete", "$sub")},
		{name: "sg delete", args: args("sg", "delete", "$sg")},
		{name: "events", args: args("events", "--limit", "1000"), check: func(t *testing.T, v map[string]string, out any) {
			l := out.([]any)
			ops := map[string]bool{}
			for _, x := range l {
				m := x.(map[string]any)
				ops[m["operation"].(string)+"/"+m["result"].(string)] = true
			}
			for _, want := range []string{"ReassignNetworkInterface/ok", "ReassignPrivateIp/ok", "CreateSubnet/InvalidSubnet", "AssociateAddress/AddressInUse"} {
				if !ops[want] {
					t.Errorf("no %s event in %v", want, ops)
				}
			}
		}},
		{name: "capture", args: args("capture", "vm1/0", "-w", "/dev/null", "--duration", "200ms"), check: capture("", nil)},
		{name: "capture unknown port", args: args("capture", "vm9/0", "-w", "/dev/null"), want: "NotFound"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			a := s.args(v)
			r := d.ctl(0, a...)
			var out any
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("roamctl %v: stdout is not JSON: %v\n%q %q", a, err, r.stdout, r.stderr)
			}
			if s.want != "" {
				if r.code == 0 {
					t.Fatalf("roamctl %v: got exit 0, want failure %s", a, s.want)
				}
				code := field(out.(map[string]any), "error", "code")
				msg, _ := field(out.(map[string]any), "error", "message").(string)
				if code != s.want || msg == "" {
					t.Fatalf("roamctl %v: got %s, want error code %s with a message", a, r.stdout, s.want)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("roamctl %v: exit %d: %s %s", a, r.code, r.stdout, r.stderr)
			}
			if s.check != nil {
				s.check(t, v, out)
			} else if m, ok := out.(map[string]any); ok && m["id"] == nil {
				t.Errorf("got object without id: %v", m)
			}
		})
	}
}

// TestCLIErrorsWithoutDaemon: no roamd, clear error, exit 1, both modes.
func TestCLIErrorsWithoutDaemon(t *testing.T) {
	var out, errb strings.Builder
	code := run([]string{"roamctl", "--socket", "/nonexistent/roamd.sock", "-o", "json", "subnet", "list"}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), `"code": "ConnectionFailed"`) {
		t.Errorf("got exit %d, %q, want 1 and a ConnectionFailed error", code, out.String())
	}
	out.Reset()
	code = run([]string{"roamctl", "--socket", "/nonexistent/roamd.sock", "subnet", "list"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "ConnectionFailed") || !strings.Contains(errb.String(), "/nonexistent/roamd.sock") {
		t.Errorf("got exit %d, %q, want 1 and an error naming the socket", code, errb.String())
	}
	code = run([]string{"roamctl", "--output", "yaml", "subnet", "list"}, &out, &errb)
	if code != 1 {
		t.Errorf("got exit %d for --output yaml, want 1", code)
	}
	for _, args := range [][]string{{"frobnicate"}, {"eni", "frobnicate"}, {"sg", "rule", "frobnicate"}} {
		errb.Reset()
		code = run(append([]string{"roamctl"}, args...), &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), "frobnicate") {
			t.Errorf("roamctl %v: got exit %d %q, want 1 naming the unknown command", args, code, errb.String())
		}
	}
}

// TestCLITable: the table mode prints headers and values.
func TestCLITable(t *testing.T) {
	d := newDaemon(t)
	d.ok("subnet", "create", "10.1.0.0/24")
	r := d.ctl(0, "--output", "table", "subnet", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "CIDR") || !strings.Contains(r.stdout, "10.1.0.0/24") {
		t.Errorf("got %q, want a table with the subnet", r.stdout)
	}
	r = d.ctl(0, "--output", "table", "subnet", "create", "10.1.0.0/24")
	if r.code != 1 || !strings.Contains(r.stderr, "InvalidSubnet") || !strings.Contains(r.stderr, "10.1.0.0/24") {
		t.Errorf("got exit %d %q, want 1 and the error on stderr", r.code, r.stderr)
	}
}

// TestHelpEverywhere: --help works on every level of the command tree.
func TestHelpEverywhere(t *testing.T) {
	app, _ := newApp(io.Discard, io.Discard)
	var walk func(path []string, cmds []*cli.Command)
	check := func(path []string) {
		t.Run(strings.Join(append([]string{"roamctl"}, path...), " "), func(t *testing.T) {
			var out, errb strings.Builder
			if code := run(append(append([]string{"roamctl"}, path...), "--help"), &out, &errb); code != 0 {
				t.Fatalf("got exit %d: %s", code, errb.String())
			}
			if !strings.Contains(out.String(), "USAGE") {
				t.Errorf("got %q, want usage", out.String())
			}
		})
	}
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Name == "help" {
				continue
			}
			p := append(append([]string{}, path...), c.Name)
			check(p)
			walk(p, c.Subcommands)
		}
	}
	check(nil)
	walk(nil, app.Commands)
	var out strings.Builder
	if code := run([]string{"roamctl", "completion", "bash"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "complete") {
		t.Errorf("completion bash: exit %d %q", code, out.String())
	}
}
