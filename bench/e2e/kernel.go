package e2e

import "fmt"

// Arm is one implementation of the same job: forward between the pub
// namespace and the VM namespaces, DNAT the public IP to vmA, SNAT vmA's
// outbound traffic to it, and move the public IP to vmB on Reassign.
type Arm interface {
	Name() string
	// Setup builds the arm's links and configuration between the namespaces
	// pub, vma and vmb (which exist) and any it adds itself.
	Setup(e *Env) error
	// Reassign moves the public IP from vmA to vmB.
	Reassign(e *Env) error
	// VMBAddr is the private address at which vmB receives the moved flows.
	VMBAddr() string
	// ReassignMethod says in a few words how Reassign does it.
	ReassignMethod() string
	// Teardown stops what Setup started (namespaces are deleted after).
	Teardown(e *Env)
}

// kernelArm is the Linux kernel doing the job: a router namespace with a
// veth to pub, a bridge holding the veths of vmA and vmB, and nftables
// DNAT/SNAT. vmB has its own address; Reassign points the DNAT rule at it
// and deletes the conntrack entries of the public IP, without which the
// established flows would keep going to vmA.
type kernelArm struct{}

func (kernelArm) Name() string    { return "kernel" }
func (kernelArm) VMBAddr() string { return vmBOwnIP }
func (kernelArm) ReassignMethod() string {
	return "nft DNAT target changed to vmB's address + conntrack -D of the flows to the public IP and from vmA"
}

func (kernelArm) Setup(e *Env) error {
	if err := e.AddNS("rtr"); err != nil {
		return err
	}
	rtr, pub, vma, vmb := e.NS("rtr"), e.NS("pub"), e.NS("vma"), e.NS("vmb")
	script := fmt.Sprintf(`
ip -n %[1]s link add up0 address %[5]s type veth peer name eth0 netns %[2]s address %[6]s
ip -n %[1]s link add va0 type veth peer name eth0 netns %[3]s address %[7]s
ip -n %[1]s link add vb0 type veth peer name eth0 netns %[4]s address %[8]s
ip -n %[1]s link add br0 address %[9]s type bridge
ip -n %[1]s link set va0 master br0
ip -n %[1]s link set vb0 master br0
for l in up0 va0 vb0 br0; do ip -n %[1]s link set $l up; done
ip -n %[1]s addr add %[10]s/24 dev up0
ip -n %[1]s addr add %[11]s/32 dev up0
ip -n %[1]s addr add %[12]s/24 dev br0
ip netns exec %[1]s sysctl -qw net.ipv4.ip_forward=1
ip -n %[2]s addr add %[13]s/24 dev eth0
ip -n %[2]s link set eth0 up
ip -n %[3]s addr add %[14]s/24 dev eth0
ip -n %[3]s link set eth0 up
ip -n %[3]s route add default via %[12]s
ip -n %[4]s addr add %[15]s/24 dev eth0
ip -n %[4]s link set eth0 up
ip -n %[4]s route add default via %[12]s
`, rtr, pub, vma, vmb, macGwPub, macPub, macVMA, macVMB, macGwIn, pubGwIP, eipIP, gwInIP, pubClientIP, vmIP, vmBOwnIP)
	if err := e.Sh("", script); err != nil {
		return err
	}
	nft := fmt.Sprintf(`table ip rb {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[1]s dnat to %[2]s
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "up0" ip saddr %[2]s snat to %[1]s
		oifname "up0" ip saddr %[3]s snat to %[1]s
		oifname "up0" masquerade
	}
}
`, eipIP, vmIP, vmBOwnIP)
	_, err := e.RunInput("rtr", nft, "nft", "-f", "-")
	return err
}

func (kernelArm) Reassign(e *Env) error {
	nft := fmt.Sprintf("flush chain ip rb pre\nadd rule ip rb pre ip daddr %s dnat to %s\n", eipIP, vmBOwnIP)
	if _, err := e.RunInput("rtr", nft, "nft", "-f", "-"); err != nil {
		return err
	}
	// conntrack -D exits 1 when nothing matched; that is not a failure here.
	// The entries going to the public IP go first; then those from vmA's
	// address: an answer vmA had in flight when the first went would
	// otherwise have created a new entry (SNAT to the public IP) whose
	// reply direction keeps the client's flow on vmA.
	e.Run("rtr", "conntrack", "-D", "-d", eipIP)
	e.Run("rtr", "conntrack", "-D", "-s", vmIP)
	return nil
}

func (kernelArm) Teardown(*Env) {}
