package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"roam/internal/netlab"
)

// ovsArm is Open vSwitch's userspace datapath (datapath_type=netdev) in the
// router namespace, with its own ovsdb-server and ovs-vswitchd in a temp
// dir. OpenFlow rules answer ARP for the gateway addresses, route between
// the uplink veth and the VM veths, and NAT through the userspace conntrack:
// ct(commit,nat(dst=vmA)) for new inbound flows to the public IP,
// ct(commit,nat(src=public IP)) for vmA's new outbound flows, ct(nat) for
// the rest. vmB holds the same private IP as vmA (a standby, as in roam);
// Reassign rewrites the one flow that sends that IP to vmA's port so that it
// sends it to vmB's, and conntrack is left as it is.
type ovsArm struct {
	TSO bool // userspace TSO (other_config:userspace-tso-enable)

	dir      string
	server   *Proc
	vswitchd *Proc
}

const ovsBridge = "rbbr"

// OpenFlow port numbers.
const (
	ofUp  = 1
	ofVMA = 2
	ofVMB = 3
)

func (*ovsArm) Name() string    { return "ovs" }
func (*ovsArm) VMBAddr() string { return vmIP }
func (*ovsArm) ReassignMethod() string {
	return "ovs-ofctl mod-flows: the flow to the private IP outputs to vmB's port (conntrack kept)"
}

func (o *ovsArm) env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+o.dir, "OVS_DBDIR="+o.dir, "OVS_LOGDIR="+o.dir, "OVS_SYSCONFDIR="+o.dir)
}

// ovs runs an ovs-vsctl or ovs-ofctl command against this arm's daemons.
func (o *ovsArm) ovs(name string, args ...string) (string, error) {
	if name == "ovs-vsctl" {
		args = append([]string{"--db=unix:" + o.dir + "/db.sock", "--timeout=10"}, args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = o.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (o *ovsArm) Setup(e *Env) error {
	if err := e.AddNS("rtr"); err != nil {
		return err
	}
	rtr, pub, vma, vmb := e.NS("rtr"), e.NS("pub"), e.NS("vma"), e.NS("vmb")
	// With userspace TSO (OVS >= 2.13) the datapath reads and writes
	// virtio-net headers on AF_PACKET, so GSO super-frames and partial
	// checksums cross it whole, as they cross roam's TAPs and the kernel's
	// veths. Without it every offload must be off on the veths, or partial
	// checksums and super-frames would be delivered broken.
	offloads := "on"
	if !o.TSO {
		offloads = "off"
	}
	script := fmt.Sprintf(`
ip -n %[1]s link add up0 type veth peer name eth0 netns %[2]s address %[5]s
ip -n %[1]s link add va0 type veth peer name eth0 netns %[3]s address %[6]s
ip -n %[1]s link add vb0 type veth peer name eth0 netns %[4]s address %[6]s
for l in up0 va0 vb0; do ip -n %[1]s link set $l up; ip netns exec %[1]s ethtool -K $l tx %[10]s tso %[10]s gso %[10]s >/dev/null 2>&1 || true; done
for n in %[2]s %[3]s %[4]s; do ip -n $n link set eth0 up; ip netns exec $n ethtool -K eth0 tx %[10]s tso %[10]s gso %[10]s >/dev/null 2>&1 || true; done
ip -n %[2]s addr add %[7]s/24 dev eth0
ip -n %[3]s addr add %[8]s/24 dev eth0
ip -n %[3]s route add default via %[9]s
ip -n %[4]s addr add %[8]s/24 dev eth0
ip -n %[4]s route add default via %[9]s
`, rtr, pub, vma, vmb, macPub, macVMA, pubClientIP, vmIP, gwInIP, offloads)
	if err := e.Sh("", script); err != nil {
		return err
	}
	o.dir = e.Path("ovs")
	os.RemoveAll(o.dir) // the previous run's database and sockets
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	if _, err := o.ovs("ovsdb-tool", "create", o.dir+"/conf.db", "/usr/share/openvswitch/vswitch.ovsschema"); err != nil {
		return err
	}
	var err error
	o.server, err = e.StartWith(netlab.StartOpts{Env: o.env(), Log: o.dir + "/ovsdb-server.out"}, "ovsdb-server", o.dir+"/conf.db",
		"--remote=punix:"+o.dir+"/db.sock", "--unixctl="+o.dir+"/ovsdb-server.ctl",
		"--pidfile="+o.dir+"/ovsdb-server.pid", "--log-file="+o.dir+"/ovsdb-server.log")
	if err != nil {
		return err
	}
	if err := waitFile(o.dir+"/db.sock", 10*time.Second); err != nil {
		return fmt.Errorf("ovsdb-server: %w", err)
	}
	if _, err := o.ovs("ovs-vsctl", "--no-wait", "init"); err != nil {
		return err
	}
	if o.TSO {
		if _, err := o.ovs("ovs-vsctl", "--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true"); err != nil {
			return err
		}
	}
	o.vswitchd, err = e.StartWith(netlab.StartOpts{NS: "rtr", Env: o.env(), Log: o.dir + "/ovs-vswitchd.out"}, "ovs-vswitchd", "unix:"+o.dir+"/db.sock",
		"--unixctl="+o.dir+"/ovs-vswitchd.ctl", "--pidfile="+o.dir+"/ovs-vswitchd.pid", "--log-file="+o.dir+"/ovs-vswitchd.log")
	if err != nil {
		return err
	}
	if _, err := o.ovs("ovs-vsctl", "add-br", ovsBridge, "--", "set", "bridge", ovsBridge, "datapath_type=netdev",
		"other_config:hwaddr="+macGwIn, "fail_mode=secure",
		"--", "add-port", ovsBridge, "up0", "--", "set", "interface", "up0", fmt.Sprintf("ofport_request=%d", ofUp),
		"--", "add-port", ovsBridge, "va0", "--", "set", "interface", "va0", fmt.Sprintf("ofport_request=%d", ofVMA),
		"--", "add-port", ovsBridge, "vb0", "--", "set", "interface", "vb0", fmt.Sprintf("ofport_request=%d", ofVMB)); err != nil {
		return err
	}
	flows := strings.Join([]string{
		arpResponder(eipIP, macGwPub),
		arpResponder(pubGwIP, macGwPub),
		arpResponder(gwInIP, macGwIn),
		"table=0,priority=10,arp,actions=drop",
		// Inbound to the public IP, and replies to vmA's outbound flows.
		fmt.Sprintf("table=0,priority=50,in_port=%d,ip,nw_dst=%s,actions=ct(table=1,zone=1,nat)", ofUp, eipIP),
		// Outbound from the private IP, on whichever port holds it.
		fmt.Sprintf("table=0,priority=50,in_port=%d,ip,nw_src=%s,actions=ct(table=2,zone=1,nat)", ofVMA, vmIP),
		fmt.Sprintf("table=0,priority=50,in_port=%d,ip,nw_src=%s,actions=ct(table=2,zone=1,nat)", ofVMB, vmIP),
		"table=0,priority=0,actions=drop",
		// Table 1: after conntrack, inbound. New flows get DNAT and commit.
		// A one-way UDP flow stays +new after its commit (as in Linux,
		// until a reply): it is already translated, so it is committed
		// again whatever its destination; the NAT of a known flow stays.
		fmt.Sprintf("table=1,priority=10,ct_state=+trk+new,ip,actions=ct(commit,zone=1,nat(dst=%s),table=3)", vmIP),
		"table=1,priority=10,ct_state=+trk+est,ip,actions=resubmit(,3)",
		"table=1,priority=10,ct_state=+trk+rel,ip,actions=resubmit(,3)",
		"table=1,priority=0,actions=drop",
		// Table 2: after conntrack, outbound. New flows get SNAT and commit.
		fmt.Sprintf("table=2,priority=10,ct_state=+trk+new,ip,actions=ct(commit,zone=1,nat(src=%s),table=4)", eipIP),
		"table=2,priority=10,ct_state=+trk+est,ip,actions=resubmit(,4)",
		"table=2,priority=10,ct_state=+trk+rel,ip,actions=resubmit(,4)",
		"table=2,priority=0,actions=drop",
		// Table 3: to the VM that holds the private IP (Reassign changes it).
		ovsToVM(ofVMA, macVMA),
		"table=3,priority=0,actions=drop",
		// Table 4: to the outside.
		fmt.Sprintf("table=4,priority=10,ip,actions=mod_dl_src:%s,mod_dl_dst:%s,dec_ttl,output:%d", macGwPub, macPub, ofUp),
	}, "\n") + "\n"
	if err := os.WriteFile(o.dir+"/flows.txt", []byte(flows), 0o644); err != nil {
		return err
	}
	if _, err := o.ovs("ovs-ofctl", "-O", "OpenFlow13", "replace-flows", ovsBridge, o.dir+"/flows.txt"); err != nil {
		return err
	}
	return nil
}

func ovsToVM(port int, mac string) string {
	return fmt.Sprintf("table=3,priority=10,ip,nw_dst=%s,actions=mod_dl_src:%s,mod_dl_dst:%s,dec_ttl,output:%d", vmIP, macGwIn, mac, port)
}

// arpResponder answers ARP requests for ip with mac from the bridge itself.
func arpResponder(ip, mac string) string {
	hex := "0x" + strings.ReplaceAll(mac, ":", "")
	return fmt.Sprintf("table=0,priority=100,arp,arp_op=1,arp_tpa=%s,actions="+
		"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:%s,load:0x2->NXM_OF_ARP_OP[],"+
		"move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"+
		"load:%s->NXM_NX_ARP_SHA[],load:%s->NXM_OF_ARP_SPA[],in_port", ip, mac, hex, ipHex(ip))
}

func ipHex(ip string) string {
	var a, b, c, d int
	fmt.Sscanf(ip, "%d.%d.%d.%d", &a, &b, &c, &d)
	return fmt.Sprintf("0x%02x%02x%02x%02x", a, b, c, d)
}

func (o *ovsArm) Reassign(e *Env) error {
	_, err := o.ovs("ovs-ofctl", "-O", "OpenFlow13", "mod-flows", "--strict", ovsBridge, ovsToVM(ofVMB, macVMA))
	return err
}

func (o *ovsArm) Teardown(e *Env) {
	if o.vswitchd != nil {
		o.ovs("ovs-vsctl", "--if-exists", "del-br", ovsBridge)
		o.vswitchd.Stop()
	}
	if o.server != nil {
		o.server.Stop()
	}
}

func waitFile(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not appear in %v", path, d)
}
