package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"roam/api"
)

// scriptOp is one operation of the restart script, chosen from the state.
type scriptOp struct {
	name         string // the audit log's operation name
	method, path string
	body         any
}

func nextOp(rng *rand.Rand, d *api.Dump, n int) scriptOp {
	if len(d.Subnets) == 0 {
		return scriptOp{"CreateSubnet", "POST", "/v1/subnets", api.CreateSubnetInput{CIDR: "10.0.0.0/24"}}
	}
	pickENI := func() string {
		if len(d.ENIs) == 0 {
			return "eni-00000000"
		}
		return d.ENIs[rng.IntN(len(d.ENIs))].ID
	}
	pickInst := func() string {
		if len(d.Instances) == 0 {
			return "nope"
		}
		return d.Instances[rng.IntN(len(d.Instances))].ID
	}
	switch rng.IntN(12) {
	case 0:
		return scriptOp{"CreateInstance", "POST", "/v1/instances", api.CreateInstanceInput{
			Name: fmt.Sprintf("vm%d", n), Ports: []string{fmt.Sprintf("tap:p%da", n), fmt.Sprintf("tap:p%db", n)}}}
	case 1, 2:
		return scriptOp{"CreateNetworkInterface", "POST", "/v1/enis", api.CreateENIInput{SubnetID: d.Subnets[0].ID, SecondaryCount: rng.IntN(2)}}
	case 3, 4:
		return scriptOp{"AttachNetworkInterface", "POST", api.Path("enis", pickENI(), "attach"), api.AttachInput{InstanceID: pickInst()}}
	case 5:
		return scriptOp{"DetachNetworkInterface", "POST", api.Path("enis", pickENI(), "detach"), api.DetachInput{}}
	case 6, 7:
		return scriptOp{"ReassignNetworkInterface", "POST", api.Path("enis", pickENI(), "reassign"), api.ReassignInput{InstanceID: pickInst()}}
	case 8:
		ip := fmt.Sprintf("10.0.0.%d", 2+rng.IntN(60))
		return scriptOp{"ReassignPrivateIp", "POST", api.Path("ips", ip, "reassign"), api.ReassignIPInput{InstanceID: pickInst()}}
	case 9:
		if len(d.EIPs) < 4 {
			return scriptOp{"AllocateAddress", "POST", "/v1/eips", api.AllocateInput{}}
		}
		return scriptOp{"AssociateAddress", "POST", api.Path("eips", d.EIPs[rng.IntN(len(d.EIPs))].ID, "associate"),
			api.AssociateInput{ENIID: pickENI(), AllowReassociation: true}}
	case 10:
		return scriptOp{"DeleteNetworkInterface", "DELETE", api.Path("enis", pickENI()), nil}
	default:
		if rng.IntN(3) == 0 {
			return scriptOp{"TerminateInstance", "DELETE", api.Path("instances", pickInst()), nil}
		}
		return scriptOp{"AssignPrivateIpAddresses", "POST", api.Path("enis", pickENI(), "assign-ips"), api.AssignIPsInput{Count: 1}}
	}
}

func getDump(c *api.Client) (*api.Dump, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d api.Dump
	err := c.Do(ctx, http.MethodGet, "/v1/state", nil, &d)
	return &d, err
}

func dumpString(d *api.Dump) string {
	b, _ := json.Marshal(d)
	return string(b)
}

// TestRestartAfterKill9 runs a scripted sequence of operations against a
// real roamd, kills it with SIGKILL at a random moment, restarts it on the
// same state directory, and compares the restored state with the last
// committed one: exactly the same, or, when an operation was in flight,
// that operation's outcome (it committed or it did not, nothing else).
// An acknowledged operation is never lost, and after every operation and
// every restart the config the switch has in force equals a full rebuild
// from the store (the state dump's problems). Bounded in time.
func TestRestartAfterKill9(t *testing.T) {
	d := newDaemon(t)
	rng := rand.New(rand.NewPCG(1, 2))
	last, err := getDump(d.client)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(25 * time.Second)
	kills, ops, inflight, checks := 0, 0, 0, 0
	for round := 0; round < 100 && time.Now().Before(deadline); round++ {
		killAt := time.Duration(5+rng.IntN(120)) * time.Millisecond
		killed := make(chan struct{})
		go func(p *daemon) {
			time.Sleep(killAt)
			p.cmd.Process.Kill()
			close(killed)
		}(d)
		var pending *scriptOp
		acked := false
		for {
			op := nextOp(rng, last, ops)
			pending, acked = &op, false
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := d.client.Do(ctx, op.method, op.path, op.body, nil)
			cancel()
			if err != nil {
				if _, isAPI := err.(*api.Error); !isAPI {
					break // killed while in flight
				}
				pending = nil // refused: changes nothing
			} else {
				acked = true
				ops++
			}
			next, err := getDump(d.client)
			if err != nil {
				break // killed after the operation, before the dump
			}
			if len(next.Problems) > 0 {
				t.Fatalf("round %d: after %s: state or data path inconsistent: %v", round, op.name, next.Problems)
			}
			checks++
			last, pending, acked = next, nil, false
		}
		<-killed
		d.cmd.Wait()
		kills++
		d.client.Close()
		d.start()
		got, err := getDump(d.client)
		if err != nil {
			t.Fatalf("round %d: dump after restart: %v", round, err)
		}
		// Problems include the data path check: the config the switch
		// has in force equals a full rebuild from the store.
		if len(got.Problems) > 0 {
			t.Fatalf("round %d: restored state inconsistent: %v", round, got.Problems)
		}
		checks++
		switch {
		case got.Gen == last.Gen:
			if acked {
				t.Fatalf("round %d: acknowledged %s lost by the restart", round, pending.name)
			}
			if dumpString(got) != dumpString(last) {
				t.Fatalf("round %d: restored state differs from the last committed one:\nlast %s\ngot  %s", round, dumpString(last), dumpString(got))
			}
		case got.Gen == last.Gen+1 && pending != nil:
			var evs []api.Event
			if err := d.client.Do(context.Background(), "GET", "/v1/events?limit=100000", nil, &evs); err != nil {
				t.Fatal(err)
			}
			var lastOK *api.Event
			for i := range evs {
				if evs[i].Result == "ok" {
					lastOK = &evs[i]
				}
			}
			if lastOK == nil || lastOK.Operation != pending.name {
				t.Fatalf("round %d: one commit more than the last committed state, but the last ok event is %+v, want %s", round, lastOK, pending.name)
			}
			inflight++
		default:
			t.Fatalf("round %d: restored gen %d, last committed %d (pending %v)", round, got.Gen, last.Gen, pending)
		}
		last = got
	}
	if kills < 5 {
		t.Fatalf("only %d kills in the time bound", kills)
	}
	t.Logf("%d kills, %d acknowledged operations, %d restarts found the in-flight operation committed; "+
		"store and data path compared %d times (switch config == rebuild from the store); final state: %d records, %d instances",
		kills, ops, inflight, checks, len(last.ENIs), len(last.Instances))
}

// TestRestartAfterKill9Storm kills roamd with SIGKILL while several
// clients run operations at once, many times. After each restart the state
// is consistent, the config the switch has in force equals a full rebuild
// from the store (the dump's problems), and every acknowledged operation is
// there: the restored audit log holds at least as many successful events
// of each operation as were acknowledged. Bounded in time.
func TestRestartAfterKill9Storm(t *testing.T) {
	d := newDaemon(t)
	const clients = 4
	acked := map[string]int{} // operation -> acknowledged, over every round
	var mu sync.Mutex
	deadline := time.Now().Add(20 * time.Second)
	kills := 0
	for round := 0; round < 60 && time.Now().Before(deadline); round++ {
		last, err := getDump(d.client)
		if err != nil {
			t.Fatalf("round %d: dump: %v", round, err)
		}
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(c)))
				cl := api.NewClient(d.socket)
				defer cl.Close()
				for n := 0; ; n++ {
					op := nextOp(rng, last, round*1000+c*100+n)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err := cl.Do(ctx, op.method, op.path, op.body, nil)
					cancel()
					if err != nil {
						if _, isAPI := err.(*api.Error); !isAPI {
							return // killed
						}
						continue
					}
					mu.Lock()
					acked[op.name]++
					mu.Unlock()
				}
			}(c)
		}
		rng := rand.New(rand.NewPCG(uint64(round), 99))
		time.Sleep(time.Duration(20+rng.IntN(200)) * time.Millisecond)
		d.cmd.Process.Kill()
		wg.Wait()
		d.cmd.Wait()
		kills++
		d.client.Close()
		d.start()
		got, err := getDump(d.client)
		if err != nil {
			t.Fatalf("round %d: dump after restart: %v", round, err)
		}
		if len(got.Problems) > 0 {
			t.Fatalf("round %d: restored state inconsistent (store or data path): %v", round, got.Problems)
		}
		var evs []api.Event
		if err := d.client.Do(context.Background(), "GET", "/v1/events?limit=1000000", nil, &evs); err != nil {
			t.Fatal(err)
		}
		okEvents := map[string]int{}
		for _, e := range evs {
			if e.Result == "ok" {
				okEvents[e.Operation]++
			}
		}
		for op, n := range acked {
			if okEvents[op] < n {
				t.Fatalf("round %d: %d %s acknowledged, %d in the restored audit log: an acknowledged operation was lost", round, n, op, okEvents[op])
			}
		}
	}
	total := 0
	for _, n := range acked {
		total += n
	}
	if kills < 5 {
		t.Fatalf("only %d kills in the time bound", kills)
	}
	t.Logf("%d kills during %d concurrent clients' operations, %d acknowledged operations, none lost; store and data path agreed after every restart", kills, clients, total)
}
