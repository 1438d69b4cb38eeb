package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"roam/api"
)

// world is the state every table case starts from.
type world struct {
	subA, subB, sg1       string
	eniA, eniB, eniC      string
	attA                  string
	eip1, eip2            string
	vm1, vm2, vm3, vmFull string
	// mark, called by a case before its last step, makes that step the
	// one whose refusal must change nothing.
	mark func()
}

const (
	alice = 1000 // owns eniB and eniC
	bob   = 2000 // may attach eniC
)

func buildWorld(t testing.TB, s *Service) *world {
	t.Helper()
	w := &world{vm1: "vm1", vm2: "vm2", vm3: "vm3", vmFull: "vmfull"}
	w.subA = ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.0.0.0/24"})).ID
	w.subB = ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.1.0.0/24"})).ID
	w.sg1 = ok(s.CreateGroup(Root, CreateGroupInput{Name: "web"})).ID
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vm1", Ports: []string{"tap:vm1a", "tap:vm1b"}}))
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vm2", Ports: []string{"tap:vm2a@ns2"}}))
	ok(s.CreateInstance(Principal{UID: alice}, CreateInstanceInput{Name: "vm3", Ports: []string{"stream:/run/vm3.sock", "netdev:vm3b"}}))
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vmfull", Ports: []string{"tap:full0"}}))
	a := ok(s.CreateENI(Root, CreateENIInput{SubnetID: w.subA, PrivateIP: "10.0.0.10", SecurityGroups: []string{w.sg1}}))
	w.eniA = a.ID
	a = ok(s.Attach(Root, w.eniA, AttachInput{InstanceID: "vm1", DeviceIndex: intp(0)}))
	w.attA = a.Attachments[0].ID
	w.eniB = ok(s.CreateENI(Principal{UID: alice}, CreateENIInput{SubnetID: w.subA, SecondaryPrivateIPs: []string{"10.0.0.20"}})).ID
	w.eniC = ok(s.CreateENI(Principal{UID: alice}, CreateENIInput{SubnetID: w.subB})).ID
	ok(s.Grant(Principal{UID: alice}, w.eniC, PermissionInput{Permission: PermAttach, UID: bob}))
	full := ok(s.CreateENI(Root, CreateENIInput{SubnetID: w.subB}))
	ok(s.Attach(Root, full.ID, AttachInput{InstanceID: "vmfull"}))
	w.eip1 = ok(s.Allocate(Root, AllocateInput{})).ID
	ok(s.Associate(Root, w.eip1, AssociateInput{ENIID: w.eniA}))
	w.eip2 = ok(s.Allocate(Root, AllocateInput{})).ID
	return w
}

func dumpJSON(t testing.TB, s *Service) string {
	t.Helper()
	b, err := json.MarshalIndent(s.Dump(), "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func codeOf(err error) string {
	if err == nil {
		return ""
	}
	return AsError(err).Code
}

type opCase struct {
	name  string
	uid   uint32
	op    func(s *Service, p Principal, w *world) (any, error)
	want  string                                            // error code, "" for success
	check func(t *testing.T, f *fixture, w *world, out any) // after success
}

// TestOperations runs every operation and every refusal against the same
// starting world. A refusal must leave the state, the store and the data
// path untouched; a success must keep the state consistent, publish it and
// survive a restart unchanged.
func TestOperations(t *testing.T) {
	for _, mode := range []struct {
		store string
		delta bool
	}{{"mem", false}, {"mem", true}, {"bolt", false}} {
		t.Run(fmt.Sprintf("store=%s/delta=%v", mode.store, mode.delta), func(t *testing.T) { operations(t, mode.store, mode.delta) })
	}
}

func operations(t *testing.T, storeKind string, delta bool) {
	for _, tc := range opCases() {
		t.Run(tc.name, func(t *testing.T) {
			var store Store
			if storeKind == "bolt" {
				bs, err := OpenBolt(t.TempDir(), true)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { bs.Close() })
				store = bs
			}
			f := newFixtureMode(t, store, delta)
			w := buildWorld(t, f.svc)
			if delta && f.dp.deltas == 0 {
				t.Fatalf("the DeltaApplier fast path was never used")
			}
			before := dumpJSON(t, f.svc)
			applied := f.dp.applied
			w.mark = func() { before, applied = dumpJSON(t, f.svc), f.dp.applied }
			out, err := tc.op(f.svc, Principal{UID: tc.uid}, w)
			if got := codeOf(err); got != tc.want {
				t.Fatalf("got code %q (%v), want %q", got, err, tc.want)
			}
			if err != nil {
				if e := AsError(err); e.Message == "" {
					t.Errorf("got empty message for code %s", e.Code)
				}
				if !errors.Is(err, api.Sentinel(tc.want)) {
					t.Errorf("errors.Is(err, %s) = false", tc.want)
				}
				if after := dumpJSON(t, f.svc); after != before {
					t.Errorf("refused operation changed the state:\nbefore %s\nafter %s", before, after)
				}
				if f.dp.applied != applied {
					t.Errorf("refused operation published: got %d applies, want %d", f.dp.applied, applied)
				}
				f.restart(t)
				if after := dumpJSON(t, f.svc); after != before {
					t.Errorf("refused operation changed the store:\nbefore %s\nafter %s", before, after)
				}
				return
			}
			if bad := f.svc.Check(); len(bad) > 0 {
				t.Errorf("state inconsistent: %v", bad)
			}
			if len(f.dp.bad) > 0 {
				t.Errorf("published configs inconsistent: %v", f.dp.bad)
			}
			if tc.check != nil {
				tc.check(t, f, w, out)
			}
			committed := dumpJSON(t, f.svc)
			f.restart(t)
			if got := dumpJSON(t, f.svc); got != committed {
				t.Errorf("restart changed the state:\ncommitted %s\nrestored %s", committed, got)
			}
			if bad := f.svc.Check(); len(bad) > 0 {
				t.Errorf("restored state inconsistent: %v", bad)
			}
		})
	}
}

func eniOf(t *testing.T, f *fixture, id string) *ENI {
	t.Helper()
	return ok(f.svc.ENI(id))
}

func opCases() []opCase {
	sub := func(in CreateSubnetInput) func(s *Service, p Principal, w *world) (any, error) {
		return func(s *Service, p Principal, w *world) (any, error) { return s.CreateSubnet(p, in) }
	}
	inst := func(name string, ports ...string) func(s *Service, p Principal, w *world) (any, error) {
		return func(s *Service, p Principal, w *world) (any, error) {
			return s.CreateInstance(p, CreateInstanceInput{Name: name, Ports: ports})
		}
	}
	rule := func(in RuleInput) func(s *Service, p Principal, w *world) (any, error) {
		return func(s *Service, p Principal, w *world) (any, error) { return s.AddRule(p, w.sg1, in) }
	}
	eni := func(in func(w *world) CreateENIInput) func(s *Service, p Principal, w *world) (any, error) {
		return func(s *Service, p Principal, w *world) (any, error) { return s.CreateENI(p, in(w)) }
	}
	return []opCase{
		// Subnets.
		{name: "subnet create", op: sub(CreateSubnetInput{CIDR: "10.2.0.0/16", MTU: 9000, DNS: []string{"10.2.0.2"}}),
			check: func(t *testing.T, f *fixture, w *world, out any) {
				sn := out.(*Subnet)
				if got, want := sn.Gateway.String(), "10.2.0.1"; got != want {
					t.Errorf("got gateway %s, want %s", got, want)
				}
				if !slices.ContainsFunc(f.dp.last.Subnets, func(s vswitchSubnet) bool { return s.ID == sn.ID }) {
					t.Errorf("subnet %s not published", sn.ID)
				}
			}},
		{name: "subnet create bad cidr", op: sub(CreateSubnetInput{CIDR: "10.0.0/24"}), want: CodeInvalidSubnet},
		{name: "subnet create ipv6", op: sub(CreateSubnetInput{CIDR: "fd00::/64"}), want: CodeInvalidSubnet},
		{name: "subnet create not network address", op: sub(CreateSubnetInput{CIDR: "10.3.0.5/24"}), want: CodeInvalidSubnet},
		{name: "subnet create overlap", op: sub(CreateSubnetInput{CIDR: "10.0.0.128/25"}), want: CodeInvalidSubnet},
		{name: "subnet create overlaps public pool", op: sub(CreateSubnetInput{CIDR: "198.51.100.0/24"}), want: CodeInvalidSubnet},
		{name: "subnet create too small", op: sub(CreateSubnetInput{CIDR: "10.4.0.0/30"}), want: CodeInvalidSubnet},
		{name: "subnet create bad mtu", op: sub(CreateSubnetInput{CIDR: "10.4.0.0/24", MTU: 100}), want: CodeInvalidParameter},
		{name: "subnet create bad dns", op: sub(CreateSubnetInput{CIDR: "10.4.0.0/24", DNS: []string{"x"}}), want: CodeInvalidParameter},
		{name: "subnet create not root", uid: alice, op: sub(CreateSubnetInput{CIDR: "10.4.0.0/24"}), want: CodeUnauthorized},
		{name: "subnet delete in use", op: func(s *Service, p Principal, w *world) (any, error) { return s.DeleteSubnet(p, w.subA) },
			want: CodeDependencyViolation},
		{name: "subnet delete unknown", op: func(s *Service, p Principal, w *world) (any, error) { return s.DeleteSubnet(p, "subnet-00000000") },
			want: CodeNotFound},
		{name: "subnet delete", op: func(s *Service, p Principal, w *world) (any, error) {
			sn, err := s.CreateSubnet(p, CreateSubnetInput{CIDR: "10.9.0.0/24"})
			if err != nil {
				return nil, err
			}
			return s.DeleteSubnet(p, sn.ID)
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if got := len(f.svc.Subnets()); got != 2 {
				t.Errorf("got %d subnets, want 2", got)
			}
		}},

		// Security groups.
		{name: "sg create allows all egress and no ingress", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.CreateGroup(p, CreateGroupInput{Name: "db", Description: "databases"})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			g := out.(*Group)
			if len(g.Ingress) != 0 || len(g.Egress) != 1 || g.Egress[0].Protocol != "all" || g.Egress[0].CIDR.String() != "0.0.0.0/0" {
				t.Errorf("got ingress %v egress %v, want none and allow-all", g.Ingress, g.Egress)
			}
		}},
		{name: "sg create duplicate name", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.CreateGroup(p, CreateGroupInput{Name: "web"})
		}, want: CodeAddressInUse},
		{name: "sg create bad name", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.CreateGroup(p, CreateGroupInput{Name: "bad name"})
		}, want: CodeInvalidParameter},
		{name: "sg create not root", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.CreateGroup(p, CreateGroupInput{Name: "x"})
		}, want: CodeUnauthorized},
		{name: "sg delete in use", op: func(s *Service, p Principal, w *world) (any, error) { return s.DeleteGroup(p, w.sg1) },
			want: CodeDependencyViolation},
		{name: "sg delete referenced by a rule", op: func(s *Service, p Principal, w *world) (any, error) {
			g, err := s.CreateGroup(p, CreateGroupInput{Name: "peer"})
			if err != nil {
				return nil, err
			}
			if _, err := s.AddRule(p, w.sg1, RuleInput{Direction: "ingress", Protocol: "tcp", FromPort: intp(5432), GroupID: g.ID}); err != nil {
				return nil, err
			}
			w.mark()
			return s.DeleteGroup(p, g.ID)
		}, want: CodeDependencyViolation},
		{name: "sg delete", op: func(s *Service, p Principal, w *world) (any, error) {
			g, err := s.CreateGroup(p, CreateGroupInput{})
			if err != nil {
				return nil, err
			}
			return s.DeleteGroup(p, g.ID)
		}},
		{name: "sg delete unknown", op: func(s *Service, p Principal, w *world) (any, error) { return s.DeleteGroup(p, "sg-00000000") },
			want: CodeNotFound},
		{name: "rule add tcp range", op: rule(RuleInput{Direction: "ingress", Protocol: "tcp", FromPort: intp(8000), ToPort: intp(8080), CIDR: "192.0.2.0/24"}),
			check: func(t *testing.T, f *fixture, w *world, out any) {
				g := out.(*Group)
				if len(g.Ingress) != 1 || g.Ingress[0].FromPort != 8000 || g.Ingress[0].ToPort != 8080 {
					t.Errorf("got ingress %+v, want tcp 8000-8080", g.Ingress)
				}
				vg := f.dp.last.Groups[slices.IndexFunc(f.dp.last.Groups, func(x vswitchGroup) bool { return x.ID == w.sg1 })]
				if len(vg.Ingress) != 1 || vg.Ingress[0].Proto != 6 || vg.Ingress[0].FromPort != 8000 {
					t.Errorf("got published ingress %+v, want tcp 8000-8080", vg.Ingress)
				}
			}},
		{name: "rule add icmp any", op: rule(RuleInput{Direction: "ingress", Protocol: "icmp"})},
		{name: "rule add bad direction", op: rule(RuleInput{Direction: "inbound", Protocol: "tcp"}), want: CodeInvalidParameter},
		{name: "rule add bad protocol", op: rule(RuleInput{Direction: "ingress", Protocol: "tcpx"}), want: CodeInvalidParameter},
		{name: "rule add bad range", op: rule(RuleInput{Direction: "ingress", Protocol: "tcp", FromPort: intp(90), ToPort: intp(80)}), want: CodeInvalidParameter},
		{name: "rule add ports on gre", op: rule(RuleInput{Direction: "ingress", Protocol: "47", FromPort: intp(1)}), want: CodeInvalidParameter},
		{name: "rule add cidr and group", op: rule(RuleInput{Direction: "ingress", Protocol: "all", CIDR: "0.0.0.0/0", GroupID: "sg-00000000"}), want: CodeInvalidParameter},
		{name: "rule add unknown group", op: rule(RuleInput{Direction: "ingress", Protocol: "all", GroupID: "sg-00000000"}), want: CodeNotFound},
		{name: "rule add duplicate", op: rule(RuleInput{Direction: "egress", Protocol: "all"}), want: CodeAddressInUse},
		{name: "rule add not root", uid: alice, op: rule(RuleInput{Direction: "ingress", Protocol: "all"}), want: CodeUnauthorized},
		{name: "rule remove", op: func(s *Service, p Principal, w *world) (any, error) {
			g := ok(s.Group(w.sg1))
			return s.RemoveRule(p, w.sg1, g.Egress[0].ID)
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if g := out.(*Group); len(g.Egress) != 0 {
				t.Errorf("got egress %v, want none", g.Egress)
			}
		}},
		{name: "rule remove unknown", op: func(s *Service, p Principal, w *world) (any, error) { return s.RemoveRule(p, w.sg1, "sgr-00000000") },
			want: CodeNotFound},

		// Instances.
		{name: "instance create", uid: bob, op: inst("vm9", "tap:vm9a@blue", "netdev:eth9", "stream:/var/run/vm9.sock"),
			check: func(t *testing.T, f *fixture, w *world, out any) {
				in := out.(*Instance)
				if in.Owner != bob || len(in.Ports) != 3 || in.Ports[2].DeviceIndex != 2 || in.Ports[0].Status != PortUp {
					t.Errorf("got %+v, want 3 up ports owned by %d", in, bob)
				}
			}},
		{name: "instance create duplicate", op: inst("vm1", "tap:other"), want: CodeAddressInUse},
		{name: "instance create bad name", op: inst("vm 1", "tap:other"), want: CodeInvalidParameter},
		{name: "instance create no ports", op: inst("vm9"), want: CodeInvalidParameter},
		{name: "instance create bad kind", op: inst("vm9", "vhost:x"), want: CodeInvalidParameter},
		{name: "instance create ifname too long", op: inst("vm9", "tap:abcdefghijklmnop"), want: CodeInvalidParameter},
		{name: "instance create relative stream", op: inst("vm9", "stream:vm9.sock"), want: CodeInvalidParameter},
		{name: "instance create tun port", op: inst("vm9", "tun:t0"), want: CodeInvalidParameter},
		{name: "instance create port in use", op: inst("vm9", "tap:vm1b"), want: CodeAddressInUse},
		{name: "instance create uplink port", op: inst("vm9", "tap:uplink0"), want: CodeAddressInUse},
		{name: "instance create same port twice", op: inst("vm9", "tap:x1", "tap:x1"), want: CodeInvalidParameter},
		{name: "instance create port cannot open", op: inst("vm9", "tap:ok9", "tap:broken"), want: CodeInvalidParameter},
		{name: "instance terminate", op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.Attach(p, w.eniB, AttachInput{InstanceID: "vm1", DeleteOnTermination: true}); err != nil {
				return nil, err
			}
			return s.TerminateInstance(p, "vm1")
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if _, err := f.svc.ENI(w.eniB); codeOf(err) != CodeNotFound {
				t.Errorf("got %v for the DeleteOnTermination record, want NotFound", err)
			}
			a := eniOf(t, f, w.eniA)
			if a.Status != StatusAvailable || len(a.Associations) != 1 || a.PrivateIP.String() != "10.0.0.10" {
				t.Errorf("got %+v, want available with its ip and public ip", a)
			}
			if f.dp.ports["tap:vm1a"] {
				t.Errorf("port tap:vm1a still registered")
			}
		}},
		{name: "instance terminate keeps a record attached elsewhere", op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.ModifyENI(p, w.eniA, ModifyENIInput{Attachment: &ModifyAttachment{AttachmentID: w.attA, DeleteOnTermination: true}}); err != nil {
				return nil, err
			}
			if _, err := s.Attach(p, w.eniA, AttachInput{InstanceID: "vm2"}); err != nil {
				return nil, err
			}
			return s.TerminateInstance(p, "vm1")
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			a := eniOf(t, f, w.eniA)
			if len(a.Attachments) != 1 || a.Attachments[0].InstanceID != "vm2" {
				t.Errorf("got %+v, want the record kept, attached to vm2 only", a.Attachments)
			}
		}},
		{name: "instance terminate not owner", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.TerminateInstance(p, "vm3")
		}, want: CodeUnauthorized},
		{name: "instance terminate by owner", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.TerminateInstance(p, "vm3")
		}},
		{name: "instance terminate unknown", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.TerminateInstance(p, "nope")
		}, want: CodeNotFound},

		// Records.
		{name: "eni create lowest free ip", uid: bob, op: eni(func(w *world) CreateENIInput { return CreateENIInput{SubnetID: w.subA, SecondaryCount: 2} }),
			check: func(t *testing.T, f *fixture, w *world, out any) {
				e := out.(*ENI)
				got := []string{}
				for _, ip := range e.PrivateIPs {
					got = append(got, ip.String())
				}
				if want := []string{"10.0.0.3", "10.0.0.4", "10.0.0.5"}; !slices.Equal(got, want) {
					t.Errorf("got ips %v, want %v", got, want)
				}
				mac, err := net.ParseMAC(e.MAC)
				if err != nil || mac[0]&2 == 0 || mac[0]&1 != 0 {
					t.Errorf("got mac %s, want a locally administered unicast MAC", e.MAC)
				}
				if !e.SourceDestCheck || e.Status != StatusAvailable || !slices.Equal(e.Permissions.Owners, []uint32{bob}) {
					t.Errorf("got %+v, want source/dest check on, available, owned by %d", e, bob)
				}
				if r := f.dp.record(e.ID); r == nil || len(r.Ports) != 0 || r.MAC.String() != e.MAC {
					t.Errorf("got published %+v, want unattached with mac %s", r, e.MAC)
				}
			}},
		{name: "eni create explicit ip", op: eni(func(w *world) CreateENIInput {
			return CreateENIInput{SubnetID: w.subA, PrivateIP: "10.0.0.200", SourceDestCheck: boolp(false), Tags: map[string]string{"k": "v"}}
		})},
		{name: "eni create ip in use", op: eni(func(w *world) CreateENIInput { return CreateENIInput{SubnetID: w.subA, PrivateIP: "10.0.0.20"} }),
			want: CodeAddressInUse},
		{name: "eni create gateway ip", op: eni(func(w *world) CreateENIInput { return CreateENIInput{SubnetID: w.subA, PrivateIP: "10.0.0.1"} }),
			want: CodeInvalidParameter},
		{name: "eni create broadcast ip", op: eni(func(w *world) CreateENIInput { return CreateENIInput{SubnetID: w.subA, PrivateIP: "10.0.0.255"} }),
			want: CodeInvalidParameter},
		{name: "eni create ip outside subnet", op: eni(func(w *world) CreateENIInput { return CreateENIInput{SubnetID: w.subA, PrivateIP: "10.1.0.9"} }),
			want: CodeInvalidSubnet},
		{name: "eni create bad ip", op: eni(func(w *world) CreateENIInput { return CreateENIInput{SubnetID: w.subA, PrivateIP: "10.0.0.300"} }),
			want: CodeInvalidParameter},
		{name: "eni create unknown subnet", op: eni(func(w *world) CreateENIInput { return CreateENIInput{SubnetID: "subnet-00000000"} }),
			want: CodeNotFound},
		{name: "eni create unknown group", op: eni(func(w *world) CreateENIInput {
			return CreateENIInput{SubnetID: w.subA, SecurityGroups: []string{"sg-00000000"}}
		}), want: CodeNotFound},
		{name: "eni create group by name", op: eni(func(w *world) CreateENIInput {
			return CreateENIInput{SubnetID: w.subA, SecurityGroups: []string{"web"}}
		})},
		{name: "eni create for another owner", uid: alice, op: eni(func(w *world) CreateENIInput {
			u := uint32(bob)
			return CreateENIInput{SubnetID: w.subA, Owner: &u}
		}), want: CodeUnauthorized},
		{name: "eni create subnet full", op: func(s *Service, p Principal, w *world) (any, error) {
			sn, err := s.CreateSubnet(p, CreateSubnetInput{CIDR: "10.8.0.0/29"})
			if err != nil {
				return nil, err
			}
			w.mark()
			return s.CreateENI(p, CreateENIInput{SubnetID: sn.ID, SecondaryCount: 5}) // 5 usable: .2-.6
		}, want: CodeAddressLimit},
		{name: "eni delete attached", op: func(s *Service, p Principal, w *world) (any, error) { return s.DeleteENI(p, w.eniA) },
			want: CodeIncorrectState},
		{name: "eni delete disassociates", op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.Detach(p, w.eniA, DetachInput{}); err != nil {
				return nil, err
			}
			return s.DeleteENI(p, w.eniA)
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if a := ok(f.svc.Address(w.eip1)); a.ENIID != "" {
				t.Errorf("got eip associated with %s, want none", a.ENIID)
			}
			if f.dp.record(w.eniA) != nil {
				t.Errorf("deleted record still published")
			}
		}},
		{name: "eni delete not owner", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) { return s.DeleteENI(p, w.eniB) },
			want: CodeUnauthorized},
		{name: "eni delete by owner", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) { return s.DeleteENI(p, w.eniB) }},
		{name: "eni delete unknown", op: func(s *Service, p Principal, w *world) (any, error) { return s.DeleteENI(p, "eni-00000000") },
			want: CodeNotFound},

		// Attach, detach, reassign.
		{name: "attach", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniB, AttachInput{InstanceID: "vm1", DeviceIndex: intp(1)})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			e := out.(*ENI)
			if e.Status != StatusInUse || len(e.Attachments) != 1 || e.Attachments[0].Port != "tap:vm1b" {
				t.Errorf("got %+v, want in-use on tap:vm1b", e)
			}
			if r := f.dp.record(w.eniB); r == nil || !slices.Equal(r.Ports, []string{"tap:vm1b"}) {
				t.Errorf("got published %+v, want ports [tap:vm1b]", r)
			}
		}},
		{name: "attach lowest free index", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniB, AttachInput{InstanceID: "vm1"})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if got := out.(*ENI).Attachments[0].DeviceIndex; got != 1 {
				t.Errorf("got device index %d, want 1", got)
			}
		}},
		{name: "attach second instance", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniA, AttachInput{InstanceID: "vm2"})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if r := f.dp.record(w.eniA); r == nil || len(r.Ports) != 2 {
				t.Errorf("got published %+v, want 2 ports", r)
			}
		}},
		{name: "attach index taken", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniB, AttachInput{InstanceID: "vm1", DeviceIndex: intp(0)})
		}, want: CodeAddressInUse},
		{name: "attach no free port", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniB, AttachInput{InstanceID: "vmfull"})
		}, want: CodeAddressInUse},
		{name: "attach bad index", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniB, AttachInput{InstanceID: "vm1", DeviceIndex: intp(7)})
		}, want: CodeInvalidParameter},
		{name: "attach unknown instance", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniB, AttachInput{InstanceID: "nope"})
		}, want: CodeNotFound},
		{name: "attach unknown record", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, "eni-00000000", AttachInput{InstanceID: "vm1"})
		}, want: CodeNotFound},
		{name: "attach twice to one instance", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniA, AttachInput{InstanceID: "vm1", DeviceIndex: intp(1)})
		}, want: CodeIncorrectState},
		{name: "attach not allowed", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniB, AttachInput{InstanceID: "vm1"})
		}, want: CodeUnauthorized},
		{name: "attach granted", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Attach(p, w.eniC, AttachInput{InstanceID: "vm2"})
		}},
		{name: "detach granted attach only", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.Attach(p, w.eniC, AttachInput{InstanceID: "vm2"}); err != nil {
				return nil, err
			}
			w.mark()
			return s.Detach(p, w.eniC, DetachInput{})
		}, want: CodeUnauthorized},
		{name: "detach", op: func(s *Service, p Principal, w *world) (any, error) { return s.Detach(p, w.eniA, DetachInput{}) },
			check: func(t *testing.T, f *fixture, w *world, out any) {
				if e := out.(*ENI); e.Status != StatusAvailable || len(e.Associations) != 1 {
					t.Errorf("got %+v, want available, keeping its public ip", e)
				}
				if r := f.dp.record(w.eniA); r == nil || len(r.Ports) != 0 || len(r.PublicIPs) != 1 {
					t.Errorf("got published %+v, want no ports and its public ip", r)
				}
			}},
		{name: "detach not attached", op: func(s *Service, p Principal, w *world) (any, error) { return s.Detach(p, w.eniB, DetachInput{}) },
			want: CodeIncorrectState},
		{name: "detach unknown attachment", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Detach(p, w.eniA, DetachInput{AttachmentID: "attach-00000000"})
		}, want: CodeNotFound},
		{name: "detach several needs an id", op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.Attach(p, w.eniA, AttachInput{InstanceID: "vm2"}); err != nil {
				return nil, err
			}
			w.mark()
			return s.Detach(p, w.eniA, DetachInput{})
		}, want: CodeInvalidParameter},
		{name: "reassign", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Reassign(p, w.eniA, ReassignInput{InstanceID: "vm2"})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			e := out.(*ENI)
			if len(e.Attachments) != 1 || e.Attachments[0].ID != w.attA || e.Attachments[0].InstanceID != "vm2" {
				t.Errorf("got attachments %+v, want %s on vm2", e.Attachments, w.attA)
			}
			if e.PrivateIP.String() != "10.0.0.10" || len(e.Associations) != 1 || !slices.Equal(e.SecurityGroups, []string{w.sg1}) {
				t.Errorf("got %+v, want ip, public ip and groups kept", e)
			}
			if r := f.dp.record(w.eniA); r == nil || !slices.Equal(r.Ports, []string{"tap:vm2a@ns2"}) {
				t.Errorf("got published %+v, want ports [tap:vm2a@ns2]", r)
			}
		}},
		{name: "reassign unattached attaches", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Reassign(p, w.eniB, ReassignInput{InstanceID: "vm2"})
		}},
		{name: "reassign same instance", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Reassign(p, w.eniA, ReassignInput{InstanceID: "vm1"})
		}, want: CodeIncorrectState},
		{name: "reassign target full", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Reassign(p, w.eniA, ReassignInput{InstanceID: "vmfull"})
		}, want: CodeAddressInUse},
		{name: "reassign unknown target", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Reassign(p, w.eniA, ReassignInput{InstanceID: "nope"})
		}, want: CodeNotFound},
		{name: "reassign needs attach and detach", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.Attach(p, w.eniC, AttachInput{InstanceID: "vm2"}); err != nil {
				return nil, err
			}
			w.mark()
			return s.Reassign(p, w.eniC, ReassignInput{InstanceID: "vm1"})
		}, want: CodeUnauthorized},
		{name: "ip reassign moves the holder", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ReassignIP(p, "10.0.0.10", ReassignIPInput{InstanceID: "vm2"})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if e := out.(*ENI); e.ID != w.eniA || e.Attachments[0].InstanceID != "vm2" {
				t.Errorf("got %s on %+v, want %s on vm2", e.ID, e.Attachments, w.eniA)
			}
		}},
		{name: "ip reassign by secondary ip", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ReassignIP(p, "10.0.0.20", ReassignIPInput{InstanceID: "vm2"})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if e := out.(*ENI); e.ID != w.eniB {
				t.Errorf("got %s, want %s", e.ID, w.eniB)
			}
		}},
		{name: "ip reassign creates a record", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ReassignIP(p, "10.1.0.77", ReassignIPInput{InstanceID: "vm2"})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			e := out.(*ENI)
			if e.SubnetID != w.subB || e.PrivateIP.String() != "10.1.0.77" || e.Status != StatusInUse || e.Permissions.Owners[0] != bob {
				t.Errorf("got %+v, want a new in-use record of %s with 10.1.0.77 owned by %d", e, w.subB, bob)
			}
		}},
		{name: "ip reassign outside subnets", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ReassignIP(p, "10.7.0.1", ReassignIPInput{InstanceID: "vm2"})
		}, want: CodeInvalidSubnet},
		{name: "ip reassign gateway", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ReassignIP(p, "10.1.0.1", ReassignIPInput{InstanceID: "vm2"})
		}, want: CodeInvalidParameter},
		{name: "ip reassign several needs an attachment", op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.Attach(p, w.eniA, AttachInput{InstanceID: "vm2"}); err != nil {
				return nil, err
			}
			w.mark()
			out, err := s.ReassignIP(p, "10.0.0.10", ReassignIPInput{InstanceID: "vm3"})
			if err != nil && !strings.Contains(err.Error(), "--attachment") {
				return nil, fmt.Errorf("error %v does not name the --attachment flag", err)
			}
			return out, err
		}, want: CodeInvalidParameter},
		{name: "ip reassign moves the named attachment", op: func(s *Service, p Principal, w *world) (any, error) {
			e, err := s.Attach(p, w.eniA, AttachInput{InstanceID: "vm2"})
			if err != nil {
				return nil, err
			}
			w.mark()
			return s.ReassignIP(p, "10.0.0.10", ReassignIPInput{InstanceID: "vm3", AttachmentID: e.Attachments[1].ID})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			e := out.(*ENI)
			var on []string
			for _, a := range e.Attachments {
				on = append(on, a.InstanceID)
			}
			if !slices.Equal(on, []string{"vm1", "vm3"}) || e.Attachments[0].ID != w.attA {
				t.Errorf("got attachments %+v, want %s kept on vm1 and the second moved to vm3", e.Attachments, w.attA)
			}
		}},
		{name: "reassign moves the named attachment", op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.Attach(p, w.eniA, AttachInput{InstanceID: "vm2"}); err != nil {
				return nil, err
			}
			w.mark()
			return s.Reassign(p, w.eniA, ReassignInput{InstanceID: "vm3", AttachmentID: w.attA})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			e := out.(*ENI)
			if len(e.Attachments) != 2 || e.Attachments[0].ID != w.attA || e.Attachments[0].InstanceID != "vm3" || e.Attachments[1].InstanceID != "vm2" {
				t.Errorf("got attachments %+v, want %s moved to vm3 and the other kept on vm2", e.Attachments, w.attA)
			}
		}},
		{name: "ip reassign attachment of no record", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ReassignIP(p, "10.1.0.77", ReassignIPInput{InstanceID: "vm2", AttachmentID: w.attA})
		}, want: CodeNotFound},
		{name: "ip reassign create but target full", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ReassignIP(p, "10.1.0.77", ReassignIPInput{InstanceID: "vmfull"})
		}, want: CodeAddressInUse},
		{name: "ip reassign not allowed", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ReassignIP(p, "10.0.0.10", ReassignIPInput{InstanceID: "vm2"})
		}, want: CodeUnauthorized},

		// Secondary IPs.
		{name: "assign ips", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.AssignIPs(p, w.eniB, AssignIPsInput{PrivateIPs: []string{"10.0.0.30"}, Count: 1})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if got := len(out.(*ENI).PrivateIPs); got != 4 {
				t.Errorf("got %d ips, want 4", got)
			}
		}},
		{name: "assign ip in use", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.AssignIPs(p, w.eniA, AssignIPsInput{PrivateIPs: []string{"10.0.0.20"}})
		}, want: CodeAddressInUse},
		{name: "assign ip with reassignment moves its public ip", op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.Associate(p, w.eip2, AssociateInput{ENIID: w.eniB, PrivateIP: "10.0.0.20"}); err != nil {
				return nil, err
			}
			return s.AssignIPs(p, w.eniA, AssignIPsInput{PrivateIPs: []string{"10.0.0.20"}, AllowReassignment: true})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			a := out.(*ENI)
			if !a.HasIP(netip.MustParseAddr("10.0.0.20")) || len(a.Associations) != 2 {
				t.Errorf("got %+v, want 10.0.0.20 and its public ip", a)
			}
			if b := eniOf(t, f, w.eniB); b.HasIP(netip.MustParseAddr("10.0.0.20")) {
				t.Errorf("10.0.0.20 still on %s", w.eniB)
			}
		}},
		{name: "assign primary ip never moves", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.AssignIPs(p, w.eniB, AssignIPsInput{PrivateIPs: []string{"10.0.0.10"}, AllowReassignment: true})
		}, want: CodeAddressInUse},
		{name: "assign ip other subnet", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.AssignIPs(p, w.eniA, AssignIPsInput{PrivateIPs: []string{"10.1.0.50"}})
		}, want: CodeInvalidSubnet},
		{name: "assign ip nothing", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.AssignIPs(p, w.eniA, AssignIPsInput{})
		}, want: CodeInvalidParameter},
		{name: "assign ip not allowed", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.AssignIPs(p, w.eniB, AssignIPsInput{Count: 1})
		}, want: CodeUnauthorized},
		{name: "assign ip granted", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			if _, err := s.Grant(Principal{UID: alice}, w.eniB, PermissionInput{Permission: PermSetIP, UID: bob}); err != nil {
				return nil, err
			}
			return s.AssignIPs(p, w.eniB, AssignIPsInput{Count: 1})
		}},
		{name: "unassign ip", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.UnassignIPs(p, w.eniB, UnassignIPsInput{PrivateIPs: []string{"10.0.0.20"}})
		}},
		{name: "unassign primary", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.UnassignIPs(p, w.eniB, UnassignIPsInput{PrivateIPs: []string{"10.0.0.2"}})
		}, want: CodeInvalidParameter},
		{name: "unassign not assigned", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.UnassignIPs(p, w.eniB, UnassignIPsInput{PrivateIPs: []string{"10.0.0.99"}})
		}, want: CodeNotFound},

		// Modify, grant, revoke.
		{name: "modify", op: func(s *Service, p Principal, w *world) (any, error) {
			d := "db primary"
			return s.ModifyENI(p, w.eniA, ModifyENIInput{SourceDestCheck: boolp(false), SecurityGroups: &[]string{}, Description: &d,
				Attachment: &ModifyAttachment{AttachmentID: w.attA, DeleteOnTermination: true}})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			e := out.(*ENI)
			if e.SourceDestCheck || len(e.SecurityGroups) != 0 || !e.Attachments[0].DeleteOnTermination {
				t.Errorf("got %+v, want check off, no groups, delete on termination", e)
			}
			if r := f.dp.record(w.eniA); r.SourceDestCheck || len(r.Groups) != 0 {
				t.Errorf("got published %+v, want check off and no groups", r)
			}
		}},
		{name: "modify nothing", op: func(s *Service, p Principal, w *world) (any, error) { return s.ModifyENI(p, w.eniA, ModifyENIInput{}) },
			want: CodeInvalidParameter},
		{name: "modify unknown group", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ModifyENI(p, w.eniA, ModifyENIInput{SecurityGroups: &[]string{"sg-00000000"}})
		}, want: CodeNotFound},
		{name: "modify not owner", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.ModifyENI(p, w.eniC, ModifyENIInput{SourceDestCheck: boolp(false)})
		}, want: CodeUnauthorized},
		{name: "grant", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Grant(p, w.eniB, PermissionInput{Permission: PermDetach, UID: 3000})
		}},
		{name: "grant twice", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Grant(p, w.eniC, PermissionInput{Permission: PermAttach, UID: bob})
		}, want: CodeIncorrectState},
		{name: "grant bad permission", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Grant(p, w.eniC, PermissionInput{Permission: "read", UID: bob})
		}, want: CodeInvalidParameter},
		{name: "grant not owner", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Grant(p, w.eniC, PermissionInput{Permission: PermOwner, UID: bob})
		}, want: CodeUnauthorized},
		{name: "revoke", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Revoke(p, w.eniC, PermissionInput{Permission: PermAttach, UID: bob})
		}},
		{name: "revoke missing", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Revoke(p, w.eniC, PermissionInput{Permission: PermDetach, UID: bob})
		}, want: CodeNotFound},

		// Public IPs.
		{name: "eip allocate skips gateway", op: func(s *Service, p Principal, w *world) (any, error) { return s.Allocate(p, AllocateInput{}) },
			check: func(t *testing.T, f *fixture, w *world, out any) {
				if got := out.(*Address).PublicIP.String(); got != "198.51.100.4" {
					t.Errorf("got %s, want 198.51.100.4 (.1 is the gateway, .2 and .3 allocated)", got)
				}
			}},
		{name: "eip allocate address", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Allocate(p, AllocateInput{Address: "198.51.100.9"})
		}},
		{name: "eip allocate gateway address", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Allocate(p, AllocateInput{Address: "198.51.100.1"})
		}, want: CodeInvalidParameter},
		{name: "eip allocate outside pool", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Allocate(p, AllocateInput{Address: "203.0.113.5"})
		}, want: CodeInvalidParameter},
		{name: "eip allocate taken", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Allocate(p, AllocateInput{Address: "198.51.100.2"})
		}, want: CodeAddressInUse},
		{name: "eip allocate not root", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Allocate(p, AllocateInput{})
		}, want: CodeUnauthorized},
		{name: "eip allocate pool exhausted", op: func(s *Service, p Principal, w *world) (any, error) {
			for i := 0; i < 11; i++ { // .4-.14
				if _, err := s.Allocate(p, AllocateInput{}); err != nil {
					return nil, err
				}
			}
			w.mark()
			return s.Allocate(p, AllocateInput{})
		}, want: CodeAddressLimit},
		{name: "eip release associated", op: func(s *Service, p Principal, w *world) (any, error) { return s.Release(p, w.eip1) },
			want: CodeDependencyViolation},
		{name: "eip release", op: func(s *Service, p Principal, w *world) (any, error) { return s.Release(p, w.eip2) }},
		{name: "eip release by address", op: func(s *Service, p Principal, w *world) (any, error) { return s.Release(p, "198.51.100.3") }},
		{name: "eip release unknown", op: func(s *Service, p Principal, w *world) (any, error) { return s.Release(p, "eipalloc-00000000") },
			want: CodeNotFound},
		{name: "eip associate", uid: alice, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Associate(p, w.eip2, AssociateInput{ENIID: w.eniB, PrivateIP: "10.0.0.20"})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			r := f.dp.record(w.eniB)
			if len(r.PublicIPs) != 1 || r.PublicIPs[0].Private.String() != "10.0.0.20" || r.PublicIPs[0].Public.String() != "198.51.100.3" {
				t.Errorf("got published %+v, want 198.51.100.3 -> 10.0.0.20", r.PublicIPs)
			}
		}},
		{name: "eip associate elsewhere", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Associate(p, w.eip1, AssociateInput{ENIID: w.eniB})
		}, want: CodeAddressInUse},
		{name: "eip associate private ip taken", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Associate(p, w.eip2, AssociateInput{ENIID: w.eniA})
		}, want: CodeAddressInUse},
		{name: "eip reassociate", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Associate(p, w.eip1, AssociateInput{ENIID: w.eniB, AllowReassociation: true})
		}, check: func(t *testing.T, f *fixture, w *world, out any) {
			if r := f.dp.record(w.eniA); len(r.PublicIPs) != 0 {
				t.Errorf("got %+v on the old record, want none", r.PublicIPs)
			}
			if r := f.dp.record(w.eniB); len(r.PublicIPs) != 1 {
				t.Errorf("got %+v on the new record, want one", r.PublicIPs)
			}
		}},
		{name: "eip associate foreign private ip", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Associate(p, w.eip2, AssociateInput{ENIID: w.eniB, PrivateIP: "10.0.0.10"})
		}, want: CodeInvalidParameter},
		{name: "eip associate not allowed", uid: bob, op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Associate(p, w.eip2, AssociateInput{ENIID: w.eniB})
		}, want: CodeUnauthorized},
		{name: "eip associate twice", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Associate(p, w.eip1, AssociateInput{ENIID: w.eniA})
		}, want: CodeIncorrectState},
		{name: "eip disassociate by address", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Disassociate(p, "198.51.100.2")
		}},
		{name: "eip disassociate not associated", op: func(s *Service, p Principal, w *world) (any, error) {
			return s.Disassociate(p, w.eip2)
		}, want: CodeIncorrectState},
	}
}
