package e2e

import (
	"fmt"
	"os"
	"strings"
)

// roamArm is roamd with a TAP uplink in the pub namespace and one TAP port
// in each VM namespace, configured only through roamctl: a subnet, a
// security group that admits the test traffic, two instances, a record
// (ENI) with vmA's IP attached to vmA, and a public IP associated with it.
// vmB's TAP carries the same IP as a standby; Reassign is
// `roamctl eni reassign ENI --instance vmb`.
type roamArm struct {
	eni string
	// Notes are what the report should say about roamd's behaviour.
	Notes []string
	// Steps lists the roamctl commands run and what each printed, for the
	// report when something fails.
	Steps []string
}

func (*roamArm) Name() string           { return "roam" }
func (*roamArm) VMBAddr() string        { return vmIP }
func (*roamArm) ReassignMethod() string { return "roamctl eni reassign ENI --instance vmb" }

// ctl runs roamctl with JSON output and decodes the object it prints.
func (r *roamArm) ctl(e *Env, args ...string) (map[string]any, error) {
	var obj map[string]any
	err := e.CtlInto(&obj, args...)
	said := fmt.Sprint(obj)
	if err != nil {
		said = err.Error()
	}
	r.Steps = append(r.Steps, "roamctl "+strings.Join(args, " ")+" -> "+firstN(said, 300))
	return obj, err
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func id(obj map[string]any) string {
	s, _ := obj["id"].(string)
	return s
}

func (r *roamArm) Setup(e *Env) error {
	// A previous run's state would be restored.
	if err := os.RemoveAll(e.Path("state")); err != nil {
		return err
	}
	if err := e.StartRoamd("--uplink", "tap:eth0@"+e.NS("pub"), "--public-cidr", "203.0.113.0/24",
		"--public-ip", pubGwIP, "--upstream", pubClientIP, "--log-level", "warn"); err != nil {
		return err
	}
	subnet, err := r.ctl(e, "subnet", "create", "10.0.0.0/24")
	if err != nil {
		return err
	}
	sg, err := r.ctl(e, "sg", "create", "--name", "bench")
	if err != nil {
		return err
	}
	for _, proto := range []string{"tcp", "udp", "icmp"} {
		if _, err := r.ctl(e, "sg", "rule", "add", id(sg), "--direction", "ingress", "--protocol", proto, "--cidr", "0.0.0.0/0"); err != nil {
			return err
		}
	}
	if _, err := r.ctl(e, "instance", "create", "vma", "--port", "tap:eth0@"+e.NS("vma")); err != nil {
		return err
	}
	if _, err := r.ctl(e, "instance", "create", "vmb", "--port", "tap:eth0@"+e.NS("vmb")); err != nil {
		return err
	}
	// roamd must have created the TAP devices it accepted; say so precisely
	// when it has not, rather than failing later on a missing link.
	for _, ns := range []string{"pub", "vma", "vmb"} {
		if err := waitLink(e, ns, "eth0"); err != nil {
			return err
		}
	}
	eni, err := r.ctl(e, "eni", "create", "--subnet", id(subnet), "--private-ip", vmIP, "--sg", id(sg), "--description", "bench vmA")
	if err != nil {
		return err
	}
	r.eni = id(eni)
	mac, _ := eni["mac"].(string)
	if _, err := r.ctl(e, "eni", "attach", r.eni, "--instance", "vma", "--device-index", "0"); err != nil {
		return err
	}
	// DESIGN: roam gives a tap: port's guest-side device the record's MAC.
	// When it has not, the bench configures the guests with it, as QEMU is
	// given a VM's MAC (-device ...,mac=), and says so in the report.
	if got, _ := e.LinkMAC("vma", "eth0"); mac != "" && !strings.EqualFold(got, mac) {
		r.Notes = append(r.Notes, fmt.Sprintf("roamd did not give vmA's TAP the record's MAC %s after eni attach (it has %s); the bench set it on vmA and vmB", mac, got))
		for _, ns := range []string{"vma", "vmb"} {
			if _, err := e.Run("", "ip", "-n", e.NS(ns), "link", "set", "eth0", "address", mac); err != nil {
				return err
			}
		}
	}
	eip, err := r.ctl(e, "eip", "allocate", "--address", eipIP)
	if err != nil {
		return err
	}
	if _, err := r.ctl(e, "eip", "associate", id(eip), "--eni", r.eni); err != nil {
		return err
	}
	// The guests configure their addresses by hand (DHCP is not what is
	// measured); roam has set the record's MAC on vmA's device.
	script := fmt.Sprintf(`
ip -n %[1]s addr add %[4]s/24 dev eth0
ip -n %[1]s link set eth0 up
for n in %[2]s %[3]s; do
  ip -n $n addr add %[5]s/24 dev eth0
  ip -n $n link set eth0 up
  ip -n $n route add default via %[6]s
done
`, e.NS("pub"), e.NS("vma"), e.NS("vmb"), pubClientIP, vmIP, gwInIP)
	return e.Sh("", script)
}

func (r *roamArm) Reassign(e *Env) error {
	_, err := r.ctl(e, "eni", "reassign", r.eni, "--instance", "vmb", "--device-index", "0")
	return err
}

func (r *roamArm) Teardown(e *Env) {
	if d := e.Roamd(); d != nil {
		d.Stop()
	}
}

// waitLink waits for roamd's TAP device to appear in a namespace, and says
// precisely which port it is when it does not.
func waitLink(e *Env, ns, dev string) error {
	if err := e.WaitLink(ns, dev); err != nil {
		what := "port tap:" + dev + "@" + e.NS(ns) + " (roamctl instance create accepted it)"
		if ns == "pub" {
			what = "uplink tap:" + dev + "@" + e.NS(ns) + " (--uplink)"
		}
		return fmt.Errorf("roamd did not create the TAP device for %s: %w", what, err)
	}
	return nil
}

// Drops returns roamd's drop counters by reason (roamctl stats).
func (r *roamArm) Drops(e *Env) (map[string]int64, error) {
	var st struct {
		Drops map[string]int64 `json:"drops"`
	}
	err := e.CtlInto(&st, "stats")
	return st.Drops, err
}
