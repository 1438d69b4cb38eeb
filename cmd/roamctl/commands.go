package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"roam/api"
)

const (
	get  = http.MethodGet
	post = http.MethodPost
	del  = http.MethodDelete
)

func (x *ctl) subnetCmd() *cli.Command {
	return &cli.Command{
		Name:  "subnet",
		Usage: "private IPv4 subnets (the first address is roam's gateway)",
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "create a subnet", ArgsUsage: "CIDR",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "mtu", Usage: "MTU offered to guests (default 1500)"},
					&cli.StringSliceFlag{Name: "dns", Usage: "DNS server offered by DHCP (repeatable)"},
					&cli.StringFlag{Name: "description"},
					&cli.StringSliceFlag{Name: "tag", Usage: "KEY=VALUE (repeatable)"},
				},
				Action: func(c *cli.Context) error {
					a, err := exactArgs(c, 1, "CIDR")
					if err != nil {
						return err
					}
					t, err := tags(c.StringSlice("tag"))
					if err != nil {
						return err
					}
					return call[api.Subnet](x, post, "/v1/subnets", api.CreateSubnetInput{
						CIDR: a[0], MTU: c.Int("mtu"), DNS: c.StringSlice("dns"), Description: c.String("description"), Tags: t})
				},
			},
			{Name: "list", Usage: "list subnets", Action: func(c *cli.Context) error {
				return call[[]api.Subnet](x, get, "/v1/subnets", nil)
			}},
			x.showCmd("subnet", "SUBNET-ID", func(id string) error { return call[api.Subnet](x, get, api.Path("subnets", id), nil) }),
			x.deleteCmd("delete", "delete a subnet no record uses", "SUBNET-ID", nil, func(c *cli.Context, id string) error {
				return call[api.Subnet](x, del, api.Path("subnets", id), nil)
			}),
		},
	}
}

func (x *ctl) showCmd(what, argName string, fn func(id string) error) *cli.Command {
	return &cli.Command{Name: "show", Usage: "show one " + what, ArgsUsage: argName, Action: func(c *cli.Context) error {
		a, err := exactArgs(c, 1, argName)
		if err != nil {
			return err
		}
		return fn(a[0])
	}}
}

func (x *ctl) deleteCmd(name, usage, argName string, flags []cli.Flag, fn func(c *cli.Context, id string) error) *cli.Command {
	return &cli.Command{Name: name, Usage: usage, ArgsUsage: argName, Flags: flags, Action: func(c *cli.Context) error {
		a, err := exactArgs(c, 1, argName)
		if err != nil {
			return err
		}
		return fn(c, a[0])
	}}
}

func (x *ctl) sgCmd() *cli.Command {
	return &cli.Command{
		Name:  "sg",
		Usage: "security groups: stateful rules; a new group allows all egress and no ingress",
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "create a security group",
				Flags: []cli.Flag{&cli.StringFlag{Name: "name"}, &cli.StringFlag{Name: "description"}},
				Action: func(c *cli.Context) error {
					if _, err := exactArgs(c, 0); err != nil {
						return err
					}
					return call[api.Group](x, post, "/v1/security-groups", api.CreateGroupInput{
						Name: c.String("name"), Description: c.String("description")})
				},
			},
			{Name: "list", Usage: "list security groups", Action: func(c *cli.Context) error {
				return call[[]api.Group](x, get, "/v1/security-groups", nil)
			}},
			x.showCmd("security group", "SG-ID|NAME", func(id string) error {
				return call[api.Group](x, get, api.Path("security-groups", id), nil)
			}),
			x.deleteCmd("delete", "delete a security group no record or rule uses", "SG-ID", nil, func(c *cli.Context, id string) error {
				return call[api.Group](x, del, api.Path("security-groups", id), nil)
			}),
			{
				Name: "rule", Usage: "add or remove rules",
				Subcommands: []*cli.Command{
					{
						Name: "add", Usage: "add a rule", ArgsUsage: "SG-ID",
						Flags: []cli.Flag{
							&cli.StringFlag{Name: "direction", Value: "ingress", Usage: "ingress or egress"},
							&cli.StringFlag{Name: "protocol", Aliases: []string{"proto"}, Value: "all", Usage: "all, tcp, udp, icmp or a number"},
							&cli.StringFlag{Name: "port", Usage: "N or N-M (tcp, udp); TYPE or TYPE-CODE for icmp"},
							&cli.StringFlag{Name: "cidr", Usage: "peer CIDR (default 0.0.0.0/0)"},
							&cli.StringFlag{Name: "source-group", Aliases: []string{"group"}, Usage: "peer security group"},
						},
						Action: func(c *cli.Context) error {
							a, err := exactArgs(c, 1, "SG-ID")
							if err != nil {
								return err
							}
							from, to, err := portRange(c.String("port"))
							if err != nil {
								return err
							}
							return call[api.Group](x, post, api.Path("security-groups", a[0], "rules"), api.RuleInput{
								Direction: c.String("direction"), Protocol: c.String("protocol"), FromPort: from, ToPort: to,
								CIDR: c.String("cidr"), GroupID: c.String("source-group")})
						},
					},
					{
						Name: "remove", Usage: "remove a rule", ArgsUsage: "SG-ID RULE-ID",
						Action: func(c *cli.Context) error {
							a, err := exactArgs(c, 2, "SG-ID", "RULE-ID")
							if err != nil {
								return err
							}
							return call[api.Group](x, del, api.Path("security-groups", a[0], "rules", a[1]), nil)
						},
					},
				},
			},
		},
	}
}

func (x *ctl) instanceCmd() *cli.Command {
	return &cli.Command{
		Name:  "instance",
		Usage: "instances (VMs or namespaces) and their ports, by device index",
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "create an instance; each --port is the next device index", ArgsUsage: "NAME",
				Flags: []cli.Flag{&cli.StringSliceFlag{Name: "port",
					Usage: "tap:IFNAME[@NETNS], netdev:IFNAME or stream:PATH (repeatable; none needs --qmp)"},
					&cli.StringFlag{Name: "qmp",
						Usage: "unix socket of the VM's QEMU monitor (-qmp unix:PATH,server=on,wait=off): attaching a record hot-plugs a NIC with its MAC, detaching removes it"}},
				Action: func(c *cli.Context) error {
					a, err := exactArgs(c, 1, "NAME")
					if err != nil {
						return err
					}
					return call[api.Instance](x, post, "/v1/instances", api.CreateInstanceInput{Name: a[0], Ports: c.StringSlice("port"), QMP: c.String("qmp")})
				},
			},
			{Name: "list", Usage: "list instances", Action: func(c *cli.Context) error {
				return call[[]api.Instance](x, get, "/v1/instances", nil)
			}},
			x.showCmd("instance", "NAME", func(id string) error { return call[api.Instance](x, get, api.Path("instances", id), nil) }),
			x.deleteCmd("terminate", "terminate an instance: records with delete-on-termination are deleted, the others become available",
				"NAME", nil, func(c *cli.Context, id string) error {
					return call[api.Instance](x, del, api.Path("instances", id), nil)
				}),
		},
	}
}

func (x *ctl) eniCmd() *cli.Command {
	permFlags := []cli.Flag{
		&cli.UintFlag{Name: "uid", Usage: "user id"},
		&cli.StringFlag{Name: "user", Usage: "user name (or id)"},
		&cli.StringFlag{Name: "permission", Aliases: []string{"perm"}, Required: true, Usage: "owner, attach, detach or set-ip"},
	}
	perm := func(verb string) func(c *cli.Context) error {
		return func(c *cli.Context) error {
			a, err := exactArgs(c, 1, "ENI-ID")
			if err != nil {
				return err
			}
			uid, err := uidOf(c)
			if err != nil {
				return err
			}
			return call[api.ENI](x, post, api.Path("enis", a[0], verb), api.PermissionInput{Permission: c.String("permission"), UID: uid})
		}
	}
	return &cli.Command{
		Name:  "eni",
		Usage: "interface records: addresses, MAC and security settings that live apart from any instance",
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "create a record",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "subnet", Required: true, Usage: "SUBNET-ID"},
					&cli.StringFlag{Name: "private-ip", Usage: "primary private IP (default the lowest free one)"},
					&cli.StringSliceFlag{Name: "secondary-ip", Usage: "secondary private IP (repeatable)"},
					&cli.IntFlag{Name: "secondary-count", Usage: "number of secondary IPs to pick"},
					&cli.StringSliceFlag{Name: "sg", Usage: "security group id or name (repeatable)"},
					&cli.StringFlag{Name: "description"},
					&cli.BoolFlag{Name: "source-dest-check", Value: true, Usage: "drop traffic not from or to the record's IPs"},
					&cli.UintFlag{Name: "owner", Usage: "owner uid (root only; default the caller)"},
					&cli.IntFlag{Name: "flow-budget", Usage: "most conntrack entries (0 = the switch's default)"},
					&cli.StringSliceFlag{Name: "tag", Usage: "KEY=VALUE (repeatable)"},
				},
				Action: func(c *cli.Context) error {
					if _, err := exactArgs(c, 0); err != nil {
						return err
					}
					t, err := tags(c.StringSlice("tag"))
					if err != nil {
						return err
					}
					in := api.CreateENIInput{SubnetID: c.String("subnet"), PrivateIP: c.String("private-ip"),
						SecondaryPrivateIPs: c.StringSlice("secondary-ip"), SecondaryCount: c.Int("secondary-count"),
						SecurityGroups: c.StringSlice("sg"), Description: c.String("description"), Tags: t, FlowBudget: c.Int("flow-budget")}
					if c.IsSet("source-dest-check") {
						v := c.Bool("source-dest-check")
						in.SourceDestCheck = &v
					}
					if c.IsSet("owner") {
						o := uint32(c.Uint("owner"))
						in.Owner = &o
					}
					return call[api.ENI](x, post, "/v1/enis", in)
				},
			},
			{
				Name: "list", Usage: "list records, optionally filtered",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "instance"}, &cli.StringFlag{Name: "subnet"}, &cli.StringFlag{Name: "private-ip"},
					&cli.StringFlag{Name: "public-ip"}, &cli.StringFlag{Name: "status", Usage: "available or in-use"},
					&cli.StringFlag{Name: "sg", Usage: "security group id or name"},
				},
				Action: func(c *cli.Context) error {
					q := url.Values{}
					for flag, key := range map[string]string{"instance": "instance_id", "subnet": "subnet_id", "private-ip": "private_ip",
						"public-ip": "public_ip", "status": "status", "sg": "group"} {
						if v := c.String(flag); v != "" {
							q.Set(key, v)
						}
					}
					return call[[]api.ENI](x, get, "/v1/enis?"+q.Encode(), nil)
				},
			},
			x.showCmd("record", "ENI-ID", func(id string) error { return call[api.ENI](x, get, api.Path("enis", id), nil) }),
			x.deleteCmd("delete", "delete a record that is not attached (its public IPs are disassociated)", "ENI-ID", nil,
				func(c *cli.Context, id string) error { return call[api.ENI](x, del, api.Path("enis", id), nil) }),
			{
				Name: "attach", Usage: "attach a record to a port of an instance", ArgsUsage: "ENI-ID",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "instance", Required: true},
					&cli.IntFlag{Name: "device-index", Usage: "default: the lowest free operational port"},
					&cli.BoolFlag{Name: "delete-on-termination"},
				},
				Action: func(c *cli.Context) error {
					a, err := exactArgs(c, 1, "ENI-ID")
					if err != nil {
						return err
					}
					return call[api.ENI](x, post, api.Path("enis", a[0], "attach"), api.AttachInput{
						InstanceID: c.String("instance"), DeviceIndex: optInt(c, "device-index"), DeleteOnTermination: c.Bool("delete-on-termination")})
				},
			},
			{
				Name: "detach", Usage: "detach a record", ArgsUsage: "ENI-ID",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "attachment", Usage: "ATTACH-ID, when the record has several"},
					&cli.BoolFlag{Name: "force", Usage: "detach even when the port is not operational"},
				},
				Action: func(c *cli.Context) error {
					a, err := exactArgs(c, 1, "ENI-ID")
					if err != nil {
						return err
					}
					return call[api.ENI](x, post, api.Path("enis", a[0], "detach"), api.DetachInput{
						AttachmentID: c.String("attachment"), Force: c.Bool("force")})
				},
			},
			{
				Name: "reassign", Usage: "move a record to another instance in one step, keeping its addresses and flows", ArgsUsage: "ENI-ID",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "instance", Required: true},
					&cli.IntFlag{Name: "device-index"},
					&cli.StringFlag{Name: "attachment", Usage: "ATTACH-ID, when the record has several"},
				},
				Action: func(c *cli.Context) error {
					a, err := exactArgs(c, 1, "ENI-ID")
					if err != nil {
						return err
					}
					return call[api.ENI](x, post, api.Path("enis", a[0], "reassign"), api.ReassignInput{
						InstanceID: c.String("instance"), DeviceIndex: optInt(c, "device-index"), AttachmentID: c.String("attachment")})
				},
			},
			{
				Name: "modify", Usage: "change a record's settings", ArgsUsage: "ENI-ID",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "source-dest-check", Usage: "--source-dest-check=false turns the check off"},
					&cli.StringSliceFlag{Name: "sg", Usage: "replace the groups (repeatable)"},
					&cli.BoolFlag{Name: "no-sg", Usage: "remove every group"},
					&cli.StringFlag{Name: "description"},
					&cli.IntFlag{Name: "flow-budget"},
					&cli.StringFlag{Name: "flow-policy", Usage: "what a change of groups or public IPs does to existing flows: keep, reevaluate or reset"},
					&cli.StringSliceFlag{Name: "tag", Usage: "replace the tags: KEY=VALUE (repeatable)"},
					&cli.StringFlag{Name: "attachment", Usage: "ATTACH-ID whose --delete-on-termination changes"},
					&cli.BoolFlag{Name: "delete-on-termination"},
				},
				Action: func(c *cli.Context) error {
					a, err := exactArgs(c, 1, "ENI-ID")
					if err != nil {
						return err
					}
					var in api.ModifyENIInput
					if c.IsSet("source-dest-check") {
						v := c.Bool("source-dest-check")
						in.SourceDestCheck = &v
					}
					if c.IsSet("sg") || c.Bool("no-sg") {
						g := c.StringSlice("sg")
						if g == nil {
							g = []string{}
						}
						in.SecurityGroups = &g
					}
					if c.IsSet("description") {
						d := c.String("description")
						in.Description = &d
					}
					in.FlowBudget = optInt(c, "flow-budget")
					if c.IsSet("flow-policy") {
						fp := c.String("flow-policy")
						in.FlowPolicy = &fp
					}
					if c.IsSet("tag") {
						t, err := tags(c.StringSlice("tag"))
						if err != nil {
							return err
						}
						in.Tags = &t
					}
					if c.IsSet("attachment") || c.IsSet("delete-on-termination") {
						if !c.IsSet("attachment") {
							return fmt.Errorf("--delete-on-termination needs --attachment ATTACH-ID")
						}
						in.Attachment = &api.ModifyAttachment{AttachmentID: c.String("attachment"), DeleteOnTermination: c.Bool("delete-on-termination")}
					}
					return call[api.ENI](x, "PATCH", api.Path("enis", a[0]), in)
				},
			},
			{
				Name: "assign-ip", Usage: "add secondary private IPs", ArgsUsage: "ENI-ID",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "ip", Usage: "address (repeatable)"},
					&cli.IntFlag{Name: "count", Usage: "pick this many free addresses"},
					&cli.BoolFlag{Name: "allow-reassignment", Usage: "move an address held by another record of the subnet"},
				},
				Action: func(c *cli.Context) error {
					a, err := exactArgs(c, 1, "ENI-ID")
					if err != nil {
						return err
					}
					return call[api.ENI](x, post, api.Path("enis", a[0], "assign-ips"), api.AssignIPsInput{
						PrivateIPs: c.StringSlice("ip"), Count: c.Int("count"), AllowReassignment: c.Bool("allow-reassignment")})
				},
			},
			{
				Name: "unassign-ip", Usage: "remove secondary private IPs", ArgsUsage: "ENI-ID",
				Flags: []cli.Flag{&cli.StringSliceFlag{Name: "ip", Required: true, Usage: "address (repeatable)"}},
				Action: func(c *cli.Context) error {
					a, err := exactArgs(c, 1, "ENI-ID")
					if err != nil {
						return err
					}
					return call[api.ENI](x, post, api.Path("enis", a[0], "unassign-ips"), api.UnassignIPsInput{PrivateIPs: c.StringSlice("ip")})
				},
			},
			{Name: "grant", Usage: "give a uid a permission on a record", ArgsUsage: "ENI-ID", Flags: permFlags, Action: perm("grant")},
			{Name: "revoke", Usage: "take a permission on a record from a uid", ArgsUsage: "ENI-ID", Flags: permFlags, Action: perm("revoke")},
		},
	}
}

func (x *ctl) ipCmd() *cli.Command {
	return &cli.Command{
		Name:  "ip",
		Usage: "private IPs",
		Subcommands: []*cli.Command{{
			Name:      "reassign",
			Usage:     "move the record that holds PRIVATE-IP to an instance, or create and attach one when none does",
			ArgsUsage: "PRIVATE-IP",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "instance", Required: true},
				&cli.IntFlag{Name: "device-index"},
				&cli.StringFlag{Name: "attachment", Usage: "ATTACH-ID that moves, when the record has several"},
				&cli.StringSliceFlag{Name: "sg", Usage: "groups of a record created on the way"},
				&cli.StringFlag{Name: "description", Usage: "description of a record created on the way"},
			},
			Action: func(c *cli.Context) error {
				a, err := exactArgs(c, 1, "PRIVATE-IP")
				if err != nil {
					return err
				}
				return call[api.ENI](x, post, api.Path("ips", a[0], "reassign"), api.ReassignIPInput{
					InstanceID: c.String("instance"), DeviceIndex: optInt(c, "device-index"), AttachmentID: c.String("attachment"),
					SecurityGroups: c.StringSlice("sg"), Description: c.String("description")})
			},
		}},
	}
}

func (x *ctl) eipCmd() *cli.Command {
	return &cli.Command{
		Name:  "eip",
		Usage: "public IPs from the pool, associated 1:1 with a record's private IP",
		Subcommands: []*cli.Command{
			{
				Name: "allocate", Usage: "allocate a public IP",
				Flags: []cli.Flag{&cli.StringFlag{Name: "address", Usage: "a given address of the pool"}},
				Action: func(c *cli.Context) error {
					if _, err := exactArgs(c, 0); err != nil {
						return err
					}
					return call[api.Address](x, post, "/v1/eips", api.AllocateInput{Address: c.String("address")})
				},
			},
			{
				Name: "associate", Usage: "associate a public IP with a record", ArgsUsage: "EIPALLOC-ID|PUBLIC-IP",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "eni", Required: true},
					&cli.StringFlag{Name: "private-ip", Usage: "default the record's primary IP"},
					&cli.BoolFlag{Name: "allow-reassociation"},
				},
				Action: func(c *cli.Context) error {
					a, err := exactArgs(c, 1, "EIPALLOC-ID")
					if err != nil {
						return err
					}
					return call[api.Address](x, post, api.Path("eips", a[0], "associate"), api.AssociateInput{
						ENIID: c.String("eni"), PrivateIP: c.String("private-ip"), AllowReassociation: c.Bool("allow-reassociation")})
				},
			},
			x.deleteCmd("disassociate", "disassociate a public IP", "EIPALLOC-ID|PUBLIC-IP", nil, func(c *cli.Context, id string) error {
				return call[api.Address](x, post, api.Path("eips", id, "disassociate"), nil)
			}),
			x.deleteCmd("release", "return a public IP to the pool", "EIPALLOC-ID|PUBLIC-IP", nil, func(c *cli.Context, id string) error {
				return call[api.Address](x, del, api.Path("eips", id), nil)
			}),
			{Name: "list", Usage: "list public IPs", Action: func(c *cli.Context) error {
				return call[[]api.Address](x, get, "/v1/eips", nil)
			}},
			x.showCmd("public IP", "EIPALLOC-ID|PUBLIC-IP", func(id string) error { return call[api.Address](x, get, api.Path("eips", id), nil) }),
		},
	}
}

func eniQuery(c *cli.Context) string {
	if v := c.String("eni"); v != "" {
		return "?eni_id=" + url.QueryEscape(v)
	}
	return ""
}

func (x *ctl) conntrackCmd() *cli.Command {
	flags := []cli.Flag{&cli.StringFlag{Name: "eni", Usage: "only the flows of this record"}}
	return &cli.Command{
		Name:  "conntrack",
		Usage: "connection tracking entries",
		Subcommands: []*cli.Command{
			{Name: "list", Usage: "list tracked flows (a non-administrator: of its records)", Flags: flags, Action: func(c *cli.Context) error {
				return call[[]api.Flow](x, get, "/v1/conntrack"+eniQuery(c), nil)
			}},
			{Name: "flush", Usage: "remove tracked flows", Flags: flags, Action: func(c *cli.Context) error {
				return call[api.FlushResult](x, del, "/v1/conntrack"+eniQuery(c), nil)
			}},
		},
	}
}

func (x *ctl) statsCmd() *cli.Command {
	return &cli.Command{
		Name:  "stats",
		Usage: "data path counters: global (a non-administrator: the sum of its records, id uid:N), or of one record",
		Flags: []cli.Flag{&cli.StringFlag{Name: "eni"}},
		Action: func(c *cli.Context) error {
			return call[api.Stats](x, get, "/v1/stats"+eniQuery(c), nil)
		},
	}
}

func (x *ctl) eventsCmd() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "the audit log: every change and refusal, with time, uid, operation and result",
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "after", Usage: "only events with a larger id"},
			&cli.IntFlag{Name: "limit", Value: 100},
		},
		Action: func(c *cli.Context) error {
			return call[[]api.Event](x, get, fmt.Sprintf("/v1/events?after=%d&limit=%d", c.Uint64("after"), c.Int("limit")), nil)
		},
	}
}

func (x *ctl) captureCmd() *cli.Command {
	return &cli.Command{
		Name:      "capture",
		Usage:     "write the frames crossing a port to a pcap file (root only); stop with Ctrl-C or --count",
		ArgsUsage: "PORT (a spec, INSTANCE/INDEX, an ENI-ID or uplink)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Required: true, Usage: "pcap file (- for stdout)"},
			&cli.IntFlag{Name: "count", Aliases: []string{"c"}, Usage: "stop after this many frames"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long"},
		},
		Action: func(c *cli.Context) error {
			a, err := exactArgs(c, 1, "PORT")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			if d := c.Duration("duration"); d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			body, err := x.client.Stream(ctx, "/v1/capture?port="+url.QueryEscape(a[0])+"&count="+strconv.Itoa(c.Int("count")))
			if err != nil {
				if _, ok := err.(*api.Error); ok {
					return err
				}
				return connError{err}
			}
			defer body.Close()
			var w io.Writer = x.out
			if c.String("write") != "-" {
				f, err := os.Create(c.String("write"))
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			start := time.Now()
			n, err := io.Copy(w, body)
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("capture: %w", err)
			}
			if c.String("write") != "-" {
				return x.show(map[string]any{"id": a[0], "file": c.String("write"), "bytes": n, "seconds": time.Since(start).Seconds()})
			}
			return nil
		},
	}
}
