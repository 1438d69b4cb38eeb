package control

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"

	vswitch "roam/switch"
)

// TestConcurrentClients has many clients attach, detach, reassign (by
// record and by IP) and assign IPs at once through the socket. Each client
// owns its records, so it knows exactly what their attachments must be;
// the instances' ports and the subnet's addresses are contended. At the
// end the state is consistent, no IP or port is owned twice in any
// published config, and no attachment was lost or duplicated.
func TestConcurrentClients(t *testing.T) {
	for _, dp := range []string{"fake", "switch"} {
		t.Run("dp="+dp, func(t *testing.T) { concurrentClients(t, dp) })
	}
}

func concurrentClients(t *testing.T, dp string) {
	f := newFixtureMode(t, nil, dp == "fake") // the fake also checks the delta contract
	var sw *vswitch.Switch
	if dp == "switch" {
		// The real switch checks every config too: a refused one would
		// come back as DataPathRefused, which fails the test.
		f.svc.Close()
		sw = vswitch.New(vswitch.Options{})
		t.Cleanup(func() { sw.Close() })
		svc, err := Open(Options{Store: f.store, DataPath: sw, Ports: f.ports, Gateway: f.gw})
		if err != nil {
			t.Fatal(err)
		}
		f.svc = svc
	}
	s := f.svc
	sn := ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.20.0.0/26"}))
	const instances, ports, clients, recsPer, ops = 6, 2, 8, 3, 120
	var names []string
	for i := 0; i < instances; i++ {
		name := fmt.Sprintf("vm%d", i)
		names = append(names, name)
		ok(s.CreateInstance(Root, CreateInstanceInput{Name: name, Ports: []string{fmt.Sprintf("tap:c%da", i), fmt.Sprintf("tap:c%db", i)}}))
	}
	a := newAPIServer(t, s, -1)
	type model struct {
		id    string
		att   map[string]string // attachment id -> instance
		ips   []netip.Addr
		count int
	}
	models := make([][]*model, clients)
	for c := range models {
		for r := 0; r < recsPer; r++ {
			e := ok(s.CreateENI(Root, CreateENIInput{SubnetID: sn.ID}))
			models[c] = append(models[c], &model{id: e.ID, att: map[string]string{}, ips: e.PrivateIPs})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for i := 0; i < ops; i++ {
				m := models[c][rng.IntN(recsPer)]
				inst := names[rng.IntN(instances)]
				var e ENI
				var err error
				switch op := rng.IntN(5); op {
				case 0:
					err = a.do(t, "POST", Path("enis", m.id, "attach"), AttachInput{InstanceID: inst}, &e)
				case 1:
					in := DetachInput{}
					for id := range m.att {
						in.AttachmentID = id
						break
					}
					err = a.do(t, "POST", Path("enis", m.id, "detach"), in, &e)
				case 2:
					in := ReassignInput{InstanceID: inst}
					for id := range m.att {
						in.AttachmentID = id
						break
					}
					err = a.do(t, "POST", Path("enis", m.id, "reassign"), in, &e)
				case 3:
					err = a.do(t, "POST", Path("ips", m.ips[0].String(), "reassign"), ReassignIPInput{InstanceID: inst}, &e)
				case 4:
					if len(m.ips) > 1 && rng.IntN(2) == 0 {
						err = a.do(t, "POST", Path("enis", m.id, "unassign-ips"), UnassignIPsInput{PrivateIPs: []string{m.ips[len(m.ips)-1].String()}}, &e)
					} else {
						err = a.do(t, "POST", Path("enis", m.id, "assign-ips"), AssignIPsInput{Count: 1}, &e)
					}
				}
				if err != nil {
					if e, isAPI := err.(*Error); !isAPI || e.Code == CodeDataPath || e.Code == CodeInternal {
						errs <- err
						return
					}
					continue // refused: nothing changed
				}
				m.count++
				m.att = map[string]string{}
				for _, at := range e.Attachments {
					m.att[at.ID] = at.InstanceID
				}
				m.ips = e.PrivateIPs
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("transport error: %v", err)
	}
	if bad := s.Check(); len(bad) > 0 {
		t.Fatalf("state inconsistent: %v", bad)
	}
	if len(f.dp.bad) > 0 {
		t.Fatalf("published configs inconsistent: %v", f.dp.bad[:min(5, len(f.dp.bad))])
	}
	record := f.dp.record
	if sw != nil {
		record = func(id string) *vswitch.Record {
			for i, r := range sw.Config().Records {
				if r.ID == id {
					return &sw.Config().Records[i]
				}
			}
			return nil
		}
	}
	total, done := 0, 0
	for _, ms := range models {
		for _, m := range ms {
			done += m.count
			e := ok(s.ENI(m.id))
			got := map[string]string{}
			for _, at := range e.Attachments {
				got[at.ID] = at.InstanceID
			}
			total += len(got)
			if fmt.Sprint(got) != fmt.Sprint(m.att) {
				t.Errorf("record %s: got attachments %v, want %v", m.id, got, m.att)
			}
			if !slices.Equal(e.PrivateIPs, m.ips) {
				t.Errorf("record %s: got ips %v, want %v", m.id, e.PrivateIPs, m.ips)
			}
			r := record(m.id)
			if len(r.Ports) != len(got) {
				t.Errorf("record %s: got %d published ports, want %d", m.id, len(r.Ports), len(got))
			}
		}
	}
	if done < clients*ops/4 {
		t.Errorf("only %d of %d operations succeeded; the test exercises too little", done, clients*ops)
	}
	t.Logf("%d operations succeeded, %d attachments at the end", done, total)
}
