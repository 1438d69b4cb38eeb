package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadConfigFile(t *testing.T) {
	cases := []struct {
		name, text string
		want       [][2]string
		err        string
	}{
		{"all separators", "# roamd\nstate-dir = /var/lib/x\nsocket: /run/x.sock\nuplink tap:up0@ns\n\npublic-cidr=\"198.51.100.0/24\"\n",
			[][2]string{{"state-dir", "/var/lib/x"}, {"socket", "/run/x.sock"}, {"uplink", "tap:up0@ns"}, {"public-cidr", "198.51.100.0/24"}}, ""},
		{"unknown key", "colour = red\n", nil, "colour"},
		{"no value separator", "state-dir\n", nil, "line 1"},
		{"bad bool", "no-sync = maybe\n", nil, "no-sync"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "roamd.conf")
			os.WriteFile(p, []byte(tc.text), 0o644)
			got, err := ReadConfigFile(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(tc.err, "line ")) {
					t.Fatalf("got %v, want an error mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("got %v, want %v", got[i], tc.want[i])
				}
			}
		})
	}
}

func TestConfigGateway(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"ok", Config{PublicCIDR: "198.51.100.0/24", PublicIP: "198.51.100.1", Uplink: "tap:up0", Upstream: "02:00:00:00:00:01"}, ""},
		{"upstream ip", Config{Upstream: "198.51.100.254"}, ""},
		{"bad cidr", Config{PublicCIDR: "198.51.100.0"}, "public-cidr"},
		{"cidr not network", Config{PublicCIDR: "198.51.100.7/24"}, "public-cidr"},
		{"bad public ip", Config{PublicIP: "x"}, "public-ip"},
		{"bad upstream", Config{Upstream: "router"}, "upstream"},
		{"stream uplink", Config{Uplink: "stream:/x"}, "uplink"},
		{"tun uplink", Config{Uplink: "tun:t0@ns1"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.Gateway()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("got %v, want error %q", err, tc.err)
			}
		})
	}
}

func TestFilteringKey(t *testing.T) {
	c := DefaultConfig()
	if c.Filtering != FilteringAddressPortDependent || c.SwitchOptions().EndpointIndependentFiltering {
		t.Fatalf("default filtering %q, want %q", c.Filtering, FilteringAddressPortDependent)
	}
	if err := c.Set("filtering", FilteringEndpointIndependent); err != nil || !c.SwitchOptions().EndpointIndependentFiltering {
		t.Fatalf("Set endpoint-independent: %v, options %+v", err, c.SwitchOptions())
	}
	if err := c.Set("filtering", FilteringAddressDependent); err != nil || !c.SwitchOptions().AddressDependentFiltering || c.SwitchOptions().EndpointIndependentFiltering {
		t.Fatalf("Set address-dependent: %v, options %+v", err, c.SwitchOptions())
	}
	if err := c.Set("filtering", "full-cone"); err == nil || !strings.Contains(err.Error(), "filtering") {
		t.Fatalf("got %v, want an error naming filtering", err)
	}
}

func TestStoreKeys(t *testing.T) {
	if c := DefaultConfig(); c.Store != StoreBolt || c.EtcdPrefix != DefaultEtcdPrefix || c.CheckStore() != nil {
		t.Fatalf("default store %q prefix %q: %v", c.Store, c.EtcdPrefix, c.CheckStore())
	}
	cases := []struct {
		name  string
		keys  [][2]string
		err   string // of Set, naming the key
		check string // of CheckStore
		want  func(Config) bool
	}{
		{"etcd with endpoints", [][2]string{{"store", "etcd"}, {"etcd-endpoints", "http://127.0.0.1:2379, http://[::1]:2379"}, {"etcd-prefix", "/cluster-a/"}}, "", "",
			func(c Config) bool {
				return c.Store == StoreEtcd && strings.Join(c.EtcdEndpoints, " ") == "http://127.0.0.1:2379 http://[::1]:2379" && c.EtcdPrefix == "/cluster-a/"
			}},
		{"bolt", [][2]string{{"store", "bolt"}}, "", "", func(c Config) bool { return c.Store == StoreBolt }},
		{"unknown store", [][2]string{{"store", "redis"}}, "store", "", nil},
		{"etcd without endpoints", [][2]string{{"store", "etcd"}}, "", "etcd-endpoints", nil},
		{"endpoints without etcd", [][2]string{{"etcd-endpoints", "http://127.0.0.1:2379"}}, "", "etcd-endpoints", nil},
		{"https endpoint (no TLS yet)", [][2]string{{"etcd-endpoints", "https://127.0.0.1:2379"}}, "etcd-endpoints", "", nil},
		{"endpoint without scheme", [][2]string{{"etcd-endpoints", "127.0.0.1:2379"}}, "etcd-endpoints", "", nil},
		{"endpoint without port", [][2]string{{"etcd-endpoints", "http://127.0.0.1"}}, "etcd-endpoints", "", nil},
		{"endpoint with a path", [][2]string{{"etcd-endpoints", "http://127.0.0.1:2379/v3"}}, "etcd-endpoints", "", nil},
		{"empty endpoint in the list", [][2]string{{"etcd-endpoints", "http://127.0.0.1:2379,"}}, "etcd-endpoints", "", nil},
		{"prefix without slashes", [][2]string{{"etcd-prefix", "roam"}}, "etcd-prefix", "", nil},
		{"prefix without the last slash", [][2]string{{"etcd-prefix", "/roam"}}, "etcd-prefix", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			var err error
			for _, kv := range tc.keys {
				if err = c.Set(kv[0], kv[1]); err != nil {
					break
				}
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err+` "`)) {
				t.Fatalf("Set: %v, want an error naming %q", err, tc.err)
			}
			if err != nil {
				return
			}
			err = c.CheckStore()
			if tc.check == "" && err != nil || tc.check != "" && (err == nil || !strings.Contains(err.Error(), tc.check+` "`)) {
				t.Fatalf("CheckStore: %v, want an error naming %q", err, tc.check)
			}
			if tc.want != nil && !tc.want(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}
