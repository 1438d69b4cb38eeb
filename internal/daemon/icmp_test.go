package daemon

import (
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"roam/api"
	"roam/control"
	"roam/internal/packet/packettest"
	vswitch "roam/switch"
)

// TestICMPRatePerRecord (issue 10, point 3): with roamd's defaults, one
// VM's burst of TTL=1 packets costs it its own share of ICMP errors; the
// next VM's DF packet over the uplink's MTU still gets its
// fragmentation-needed. The flooding record's suppressed errors show in
// its stats (roamctl stats --eni) and its metrics; icmp-rate sets the
// share.
func TestICMPRatePerRecord(t *testing.T) {
	def := DefaultConfig()
	if def.ICMPRate != vswitch.DefaultICMPSourceRate || def.SwitchOptions().ICMPSourceRate != vswitch.DefaultICMPSourceRate {
		t.Fatalf("default icmp-rate %d (switch option %d), want %d", def.ICMPRate, def.SwitchOptions().ICMPSourceRate, vswitch.DefaultICMPSourceRate)
	}
	if err := def.Set("icmp-rate", "50"); err != nil || def.SwitchOptions().ICMPSourceRate != 50 {
		t.Fatalf("Set icmp-rate 50: %v, switch option %d", err, def.SwitchOptions().ICMPSourceRate)
	}
	for _, bad := range []string{"0", "-1", "lots", "2000000"} {
		var c Config
		if err := c.Set("icmp-rate", bad); err == nil || !strings.Contains(err.Error(), "icmp-rate") {
			t.Errorf("Set icmp-rate %s: got %v, want an error naming icmp-rate", bad, err)
		}
	}

	cfg := daemonConfig(t.TempDir())
	cfg.Metrics = "127.0.0.1:0"
	tn := startTenant(t, cfg)
	s := tn.d.Service
	sn := ok(s.CreateSubnet(control.Root, api.CreateSubnetInput{CIDR: "10.0.0.0/24"}))
	var enis []*api.ENI
	for _, vm := range []string{"vm1", "vm2"} {
		ok(s.CreateInstance(control.Root, api.CreateInstanceInput{Name: vm, Ports: []string{"tap:" + vm}}))
		e := ok(s.CreateENI(control.Root, api.CreateENIInput{SubnetID: sn.ID}))
		ok(s.Attach(control.Root, e.ID, api.AttachInput{InstanceID: vm}))
		enis = append(enis, e)
	}
	a, b := enis[0], enis[1]
	start := time.Now()
	const flood = 1000
	for i := range flood {
		tn.send("tap:vm1", a, packettest.Spec{Proto: 17, TTL: 1, Src: netip.AddrPortFrom(a.PrivateIP, uint16(10000+i)), Dst: server})
	}
	var st api.Stats
	waitUntil(t, "the flood processed", func() bool {
		tn.get(control.Root, "/v1/stats?eni_id="+a.ID, &st)
		return st.ICMPErrorsSent+st.ICMPErrorsLimited == flood
	})
	share := uint64(2*vswitch.DefaultICMPSourceRate) + uint64(time.Since(start).Seconds()*vswitch.DefaultICMPSourceRate) + 1
	t.Logf("vm1: %d TTL=1 packets, %d time exceeded sent, %d limited (share in %v: %d)", flood, st.ICMPErrorsSent, st.ICMPErrorsLimited, time.Since(start), share)
	if st.ICMPErrorsSent == 0 || st.ICMPErrorsSent > share {
		t.Fatalf("vm1 got %d time exceeded, want 1 to %d (its share)", st.ICMPErrorsSent, share)
	}
	vm2 := tn.ports.get("tap:vm2")
	tn.send("tap:vm2", b, packettest.Spec{Proto: 17, DF: true, Src: netip.AddrPortFrom(b.PrivateIP, 4000), Dst: server, Payload: make([]byte, 1600)})
	for {
		f, got := vm2.Recv(3 * time.Second)
		if !got {
			t.Fatalf("no fragmentation-needed for vm2 after vm1's flood (switch %+v)", tn.d.Switch.Counters())
		}
		if len(f) >= 14+20+8 && f[12] == 0x08 && f[13] == 0 && f[14+9] == 1 && f[14+20] == 3 && f[14+21] == 4 {
			break
		}
	}

	resp, err := http.Get("http://" + tn.d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`roam_record_icmp_errors_total{eni="` + a.ID + `",result="rate_limited"} ` + strconv.FormatUint(st.ICMPErrorsLimited, 10),
		`roam_record_icmp_errors_total{eni="` + b.ID + `",result="sent"} 1`,
		`roam_icmp_errors_total{result="sent"} ` + strconv.FormatUint(st.ICMPErrorsSent+1, 10),
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(body) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
