package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// answer is one answer the outside client got.
type answer struct {
	seq  int
	from string // the VM that answered
	src  string // the answer's source address
	at   time.Time
}

func parseClient(t *testing.T, out string) (sent map[int]time.Time, got []answer) {
	sent = map[int]time.Time{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "S":
			seq, _ := strconv.Atoi(f[1])
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			sent[seq] = time.Unix(0, ns)
		case len(f) == 6 && f[0] == "R":
			seq, _ := strconv.Atoi(f[1])
			ns, _ := strconv.ParseInt(f[5], 10, 64)
			got = append(got, answer{seq: seq, from: f[2], src: f[3], at: time.Unix(0, ns)})
		}
	}
	return sent, got
}

// TestPrivilegedQEMUReassignAndKill moves a record with a public IP from a
// running VM to another while an outside client sends a UDP stream to the
// public IP: the second VM answers from then on, the client's public tuple
// never changes, and only what was in flight is lost. Then the second VM is
// killed mid-stream: its port goes non-operational, roam keeps running,
// instance show says so, and a reassign back to the healthy VM restores
// the service.
func TestPrivilegedQEMUReassignAndKill(t *testing.T) {
	e := newEnv(t, "r")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id, ip, mac := e.eni()
	pub := e.eip(id)
	sock := filepath.Join(e.dir, "vm1.sock")
	tapName := fmt.Sprintf("rqr%d", os.Getpid())
	e.ctl("instance", "create", "vm1", "--port", "stream:"+sock)
	// vm2 is a warm standby: its NIC carries the record's MAC and it has
	// the record's address by hand; its port is free until the reassign.
	vm1, vm2 := bootPair(t, ctx,
		Config{Name: "vm1", Dir: e.dir, NICs: []NIC{{Stream: sock, MAC: mac}}},
		Config{Name: "vm2", Dir: e.dir, NICs: []NIC{{Tap: tapName, MAC: mac}}, NoDHCP: true})
	run(t, "ip", "link", "set", tapName, "up")
	e.ctl("instance", "create", "vm2", "--port", "netdev:"+tapName)
	e.ctl("eni", "attach", id, "--instance", "vm1")
	if got, _ := waitAddr(t, ctx, vm1, "eth0"); got != ip {
		t.Fatalf("vm1: DHCP gave %s, want %s", got, ip)
	}
	mustRun(t, ctx, vm2, "ip addr add "+ip+"/24 dev eth0 && ip route add default via 10.0.0.1")
	mustRun(t, ctx, vm1, "guestagent udpecho 7 vm1 >/dev/null 2>&1 & sleep 0.5")
	mustRun(t, ctx, vm2, "guestagent udpecho 7 vm2 >/dev/null 2>&1 & sleep 0.5")

	const count, every = 900, 10 * time.Millisecond
	client := exec.Command("ip", "netns", "exec", e.pubns, kitAgent, "udpclient", pub+":7", strconv.Itoa(count), every.String())
	var outb strings.Builder
	client.Stdout = &outb
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })

	time.Sleep(2 * time.Second)
	r1 := time.Now()
	e.ctl("eni", "reassign", id, "--instance", "vm2")
	r1done := time.Now()
	time.Sleep(2 * time.Second)
	killed := time.Now()
	vm2.Kill()
	// The QEMU TAP is gone with QEMU: the netdev: port goes down.
	var show map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; {
		show = e.ctl("instance", "show", "vm2")
		pt := show["ports"].([]any)[0].(map[string]any)
		if pt["status"] == "down" {
			t.Logf("instance show vm2 after the kill: port %v %v (%v)", pt["spec"], pt["status"], pt["error"])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vm2 killed, but instance show says its port is %v", pt)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	r2 := time.Now()
	e.ctl("eni", "reassign", id, "--instance", "vm1")
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v", err)
	}
	sent, got := parseClient(t, outb.String())
	if len(sent) != count {
		t.Fatalf("client sent %d datagrams, want %d", len(sent), count)
	}
	answered := map[int]string{}
	var first2, first1after time.Time
	last1 := time.Time{}
	for _, a := range got {
		if a.src != pub+":7" {
			t.Errorf("answer %d from %s: the public tuple changed, want %s:7", a.seq, a.src, pub)
		}
		answered[a.seq] = a.from
		switch {
		case a.from == "vm2" && first2.IsZero():
			first2 = a.at
		case a.from == "vm1" && a.at.Before(r1done) && a.at.After(last1):
			last1 = a.at
		case a.from == "vm1" && a.at.After(r2) && first1after.IsZero():
			first1after = a.at
		}
	}
	if first2.IsZero() {
		t.Fatalf("vm2 never answered after the reassign")
	}
	if first1after.IsZero() {
		t.Fatalf("vm1 never answered after the reassign back (service not restored)")
	}
	// Between the two reassigns, everything sent once vm2 answered is
	// answered by vm2: only what was in flight at the reassign is lost.
	lost1, lostKill := 0, 0
	for seq := 0; seq < count; seq++ {
		at := sent[seq]
		from, ok := answered[seq]
		switch {
		case at.Before(r1):
			if !ok || from != "vm1" {
				t.Errorf("datagram %d sent before the reassign: answered by %q", seq, from)
			}
		case at.Before(first2):
			if !ok {
				lost1++
			}
		case at.Before(killed.Add(-50 * time.Millisecond)):
			if !ok || from != "vm2" {
				t.Errorf("datagram %d sent after vm2 answered, before the kill: answered by %q, want vm2", seq, from)
			}
		case at.Before(first1after):
			if !ok {
				lostKill++
			}
		default:
			if !ok || from != "vm1" {
				t.Errorf("datagram %d sent after service was restored: answered by %q, want vm1", seq, from)
			}
		}
	}
	t.Logf("reassign vm1 -> vm2: API call %v, first answer from vm2 %v after the call began; lost %d datagrams (1 every %v)",
		r1done.Sub(r1).Round(time.Millisecond), first2.Sub(r1).Round(time.Millisecond), lost1, every)
	t.Logf("vm2 killed: %d datagrams lost until the reassign back to vm1 restored service (first answer %v after that call began)",
		lostKill, first1after.Sub(r2).Round(time.Millisecond))
	if _, err := e.try("instance", "show", "vm1"); err != nil {
		t.Fatalf("roamd after the kill: %v", err)
	}
}
