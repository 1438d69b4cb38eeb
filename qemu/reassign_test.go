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
	// The answers, in the order of the datagrams, must read vm1 ... vm1,
	// a gap (what was in flight at the reassign), vm2 ... vm2 with no gap,
	// a gap (from the kill to the reassign back), vm1 ... vm1 with no gap.
	answered := map[int]answer{}
	for _, a := range got {
		if a.src != pub+":7" {
			t.Errorf("answer %d from %s: the public tuple changed, want %s:7", a.seq, a.src, pub)
		}
		answered[a.seq] = a
	}
	firstV2, lastV2 := -1, -1
	for seq := 0; seq < count; seq++ {
		if answered[seq].from == "vm2" {
			if firstV2 < 0 {
				firstV2 = seq
			}
			lastV2 = seq
		}
	}
	if firstV2 < 0 {
		t.Fatalf("vm2 never answered after the reassign")
	}
	lastV1a, firstV1b := -1, -1
	for seq := 0; seq < count; seq++ {
		if answered[seq].from == "vm1" {
			if seq < firstV2 {
				lastV1a = seq
			} else if seq > lastV2 && firstV1b < 0 {
				firstV1b = seq
			}
		}
	}
	if firstV1b < 0 {
		t.Fatalf("vm1 never answered after the reassign back (service not restored)")
	}
	for seq := 0; seq < count; seq++ {
		want := ""
		switch {
		case seq <= lastV1a, seq >= firstV1b:
			want = "vm1"
		case seq >= firstV2 && seq <= lastV2:
			want = "vm2"
		}
		if got := answered[seq].from; got != want {
			t.Errorf("datagram %d: answered by %q, want %q (vm1 up to %d, vm2 %d..%d, vm1 from %d)",
				seq, got, want, lastV1a, firstV2, lastV2, firstV1b)
		}
	}
	lost1, lostKill := firstV2-lastV1a-1, firstV1b-lastV2-1
	t.Logf("reassign vm1 -> vm2: API call %v, first answer from vm2 %v after the call began; lost %d datagrams (1 every %v)",
		r1done.Sub(r1).Round(time.Millisecond), answered[firstV2].at.Sub(r1).Round(time.Millisecond), lost1, every)
	t.Logf("vm2 killed: %d datagrams lost until the reassign back to vm1 restored service (first answer %v after that call began)",
		lostKill, answered[firstV1b].at.Sub(r2).Round(time.Millisecond))
	if answered[firstV2].at.Before(r1) {
		t.Errorf("vm2's first answer (datagram %d) came before the reassign", firstV2)
	}
	if _, err := e.try("instance", "show", "vm1"); err != nil {
		t.Fatalf("roamd after the kill: %v", err)
	}
}
