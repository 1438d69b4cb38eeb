package main

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"roam/api"
)

func printTable(out io.Writer, v any) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	row := func(cols ...any) {
		s := make([]string, len(cols))
		for i, c := range cols {
			s[i] = fmt.Sprint(c)
			if s[i] == "" {
				s[i] = "-"
			}
		}
		fmt.Fprintln(w, strings.Join(s, "\t"))
	}
	switch v := v.(type) {
	case api.Subnet:
		printTable(out, []api.Subnet{v})
	case []api.Subnet:
		row("ID", "CIDR", "GATEWAY", "MTU", "DNS", "DESCRIPTION")
		for _, s := range v {
			row(s.ID, s.CIDR, s.Gateway, s.MTU, addrs(s.DNS), s.Description)
		}
	case api.Group:
		row("ID", "NAME", "DESCRIPTION")
		row(v.ID, v.Name, v.Description)
		fmt.Fprintln(w)
		row("RULE", "DIRECTION", "PROTOCOL", "PORTS", "PEER")
		for _, r := range append(append([]api.Rule{}, v.Ingress...), v.Egress...) {
			row(r.ID, r.Direction, r.Protocol, ports(r), peer(r))
		}
	case []api.Group:
		row("ID", "NAME", "INGRESS", "EGRESS", "DESCRIPTION")
		for _, g := range v {
			row(g.ID, g.Name, len(g.Ingress), len(g.Egress), g.Description)
		}
	case api.Instance:
		row("NAME", "OWNER", "CREATED", "QMP")
		row(v.Name, v.Owner, v.CreatedAt.Format(time.RFC3339), v.QMP)
		fmt.Fprintln(w)
		row("INDEX", "PORT", "STATUS", "ENI", "ATTACHMENT", "ERROR")
		for _, p := range v.Ports {
			row(p.DeviceIndex, p.Spec, p.Status, p.ENIID, p.AttachmentID, p.Error)
		}
	case []api.Instance:
		row("NAME", "OWNER", "PORTS", "ATTACHMENTS")
		for _, in := range v {
			var ps []string
			for _, p := range in.Ports {
				ps = append(ps, fmt.Sprintf("%d=%s(%s)", p.DeviceIndex, p.Spec, p.Status))
			}
			row(in.Name, in.Owner, strings.Join(ps, " "), strings.Join(in.Attachments, ","))
		}
	case api.ENI:
		kv := [][2]any{
			{"id", v.ID}, {"subnet_id", v.SubnetID}, {"status", v.Status}, {"private_ip", v.PrivateIP},
			{"private_ips", addrs(v.PrivateIPs)}, {"mac", v.MAC}, {"security_groups", strings.Join(v.SecurityGroups, ",")},
			{"source_dest_check", v.SourceDestCheck}, {"description", v.Description}, {"flow_budget", v.FlowBudget},
			{"flow_policy", flowPolicy(v.FlowPolicy)},
			{"owners", uids(v.Permissions.Owners)}, {"attachers", uids(v.Permissions.Attachers)},
			{"detachers", uids(v.Permissions.Detachers)}, {"ip_setters", uids(v.Permissions.IPSetters)},
		}
		for _, a := range v.Associations {
			kv = append(kv, [2]any{"association", fmt.Sprintf("%s -> %s (%s)", a.PublicIP, a.PrivateIP, a.AllocationID)})
		}
		for _, a := range v.Attachments {
			kv = append(kv, [2]any{"attachment", fmt.Sprintf("%s %s/%d %s delete_on_termination=%v", a.ID, a.InstanceID, a.DeviceIndex, a.Port, a.DeleteOnTermination)})
		}
		keys := make([]string, 0, len(v.Tags))
		for k := range v.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			kv = append(kv, [2]any{"tag", k + "=" + v.Tags[k]})
		}
		for _, p := range kv {
			row(p[0], p[1])
		}
	case []api.ENI:
		row("ID", "SUBNET", "STATUS", "PRIVATE_IPS", "MAC", "PUBLIC_IPS", "ATTACHED_TO", "GROUPS")
		for _, e := range v {
			var pub, att []string
			for _, a := range e.Associations {
				pub = append(pub, a.PublicIP.String())
			}
			for _, a := range e.Attachments {
				att = append(att, fmt.Sprintf("%s/%d", a.InstanceID, a.DeviceIndex))
			}
			row(e.ID, e.SubnetID, e.Status, addrs(e.PrivateIPs), e.MAC, strings.Join(pub, ","), strings.Join(att, ","), strings.Join(e.SecurityGroups, ","))
		}
	case api.Address:
		printTable(out, []api.Address{v})
	case []api.Address:
		row("ID", "PUBLIC_IP", "ENI", "PRIVATE_IP")
		for _, a := range v {
			priv := ""
			if a.PrivateIP.IsValid() {
				priv = a.PrivateIP.String()
			}
			row(a.ID, a.PublicIP, a.ENIID, priv)
		}
	case []api.Event:
		row("ID", "TIME", "UID", "OPERATION", "TARGET", "RESULT", "MESSAGE")
		for _, e := range v {
			row(e.ID, e.Time.Format(time.RFC3339), e.UID, e.Operation, e.Target, e.Result, e.Message)
		}
	case []api.Flow:
		row("PROTO", "SRC", "DST", "REPLY_SRC", "REPLY_DST", "STATE", "ENI", "EXPIRES")
		for _, f := range v {
			row(f.Proto, f.OrigSrc, f.OrigDst, f.ReplySrc, f.ReplyDst, f.State, f.ENIID, f.Expires.Format(time.RFC3339))
		}
	case api.FlushResult:
		row("ID", "FLUSHED")
		row(v.ID, v.Flushed)
	case api.Stats:
		row("id", v.ID)
		row("packets", v.Packets)
		row("packets_in", v.PacketsIn)
		row("packets_out", v.PacketsOut)
		row("bytes_in", v.BytesIn)
		row("bytes_out", v.BytesOut)
		row("forwarded", v.Forwarded)
		row("translations", v.Translations)
		row("flows", v.Flows)
		if v.FlowLimit > 0 {
			row("flow_limit", v.FlowLimit)
		}
		reasons := make([]string, 0, len(v.Drops))
		for r := range v.Drops {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			if v.Drops[r] > 0 {
				row("drops."+r, v.Drops[r])
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row(k, v[k])
		}
	default:
		fmt.Fprintf(w, "%+v\n", v)
	}
}

func addrs(a []netip.Addr) string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// flowPolicy shows a record's flow policy; absent means keep.
func flowPolicy(p string) string {
	if p == "" {
		return "keep"
	}
	return p
}

func uids(u []uint32) string {
	s := make([]string, len(u))
	for i, x := range u {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

func ports(r api.Rule) string {
	switch r.Protocol {
	case "tcp", "udp":
		if r.FromPort == 0 && r.ToPort == 65535 {
			return "all"
		}
		if r.FromPort == r.ToPort {
			return fmt.Sprint(r.FromPort)
		}
		return fmt.Sprintf("%d-%d", r.FromPort, r.ToPort)
	case "icmp":
		if r.FromPort < 0 {
			return "any"
		}
		if r.ToPort < 0 {
			return fmt.Sprintf("type %d", r.FromPort)
		}
		return fmt.Sprintf("type %d code %d", r.FromPort, r.ToPort)
	}
	return "all"
}

func peer(r api.Rule) string {
	if r.GroupID != "" {
		return r.GroupID
	}
	return r.CIDR.String()
}
