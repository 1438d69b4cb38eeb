package daemon

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roam/control"
	vswitch "roam/switch"
)

// Metrics are roamd's Prometheus metrics: operation counts and latencies
// (fed by control.Options.Observe) and, at scrape time, the object counts of the
// service and the switch's counters.
type Metrics struct {
	ops     *prometheus.CounterVec
	latency *prometheus.HistogramVec
	svc     *control.Service
	sw      *vswitch.Switch
}

// NewMetrics returns the metrics; call Register, and pass Observe in
// control.Options.
func NewMetrics() *Metrics {
	return &Metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roam_operations_total", Help: "Control operations by name and result (ok or an error code).",
		}, []string{"operation", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "roam_operation_duration_seconds", Help: "Control operation latency, validation to publication.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}, []string{"operation"}),
	}
}

// Observe records one operation.
func (m *Metrics) Observe(op, result string, d time.Duration) {
	m.ops.WithLabelValues(op, result).Inc()
	m.latency.WithLabelValues(op).Observe(d.Seconds())
}

// Register registers the metrics with reg; svc and sw (either may be nil)
// are read at scrape time.
func (m *Metrics) Register(reg prometheus.Registerer, svc *control.Service, sw *vswitch.Switch) error {
	m.svc, m.sw = svc, sw
	for _, c := range []prometheus.Collector{m.ops, m.latency, m} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

var (
	descObjects      = prometheus.NewDesc("roam_objects", "Objects in the committed state, by kind.", []string{"kind"}, nil)
	descGen          = prometheus.NewDesc("roam_state_generation", "Generation of the committed state.", nil, nil)
	descRecPackets   = prometheus.NewDesc("roam_record_packets_total", "Packets of a record, by direction.", []string{"eni", "direction"}, nil)
	descRecBytes     = prometheus.NewDesc("roam_record_bytes_total", "Bytes of a record, by direction.", []string{"eni", "direction"}, nil)
	descRecDrops     = prometheus.NewDesc("roam_record_drops_total", "Drops of a record, by reason.", []string{"eni", "reason"}, nil)
	descRecFlows     = prometheus.NewDesc("roam_record_conntrack_entries", "Conntrack entries charged to a record.", []string{"eni"}, nil)
	descRecICMP      = prometheus.NewDesc("roam_record_icmp_errors_total", "ICMP errors roam originated about a record's packets, by result: sent or rate_limited.", []string{"eni", "result"}, nil)
	descDrops        = prometheus.NewDesc("roam_drops_total", "Frames dropped by the switch, by reason.", []string{"reason"}, nil)
	descPackets      = prometheus.NewDesc("roam_packets_total", "Frames received by the switch.", nil, nil)
	descFlows        = prometheus.NewDesc("roam_conntrack_entries", "Conntrack entries.", nil, nil)
	descFlowLimit    = prometheus.NewDesc("roam_conntrack_limit", "Conntrack entry limit.", nil, nil)
	descICMPErrors   = prometheus.NewDesc("roam_icmp_errors_total", "ICMP errors roam originated (time exceeded, fragmentation needed, administratively prohibited), by result: sent or rate_limited.", []string{"result"}, nil)
	descNATPortsUsed = prometheus.NewDesc("roam_nat_ports_in_use", "PAT ports (ICMP ids) in use per public IP and protocol.", []string{"public_ip", "proto"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descObjects, descGen, descRecPackets, descRecBytes, descRecDrops, descRecFlows, descRecICMP,
		descDrops, descPackets, descFlows, descFlowLimit, descNATPortsUsed, descICMPErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	var ids []string
	var publicIPs []netip.Addr
	if m.svc != nil {
		c := m.svc.Census()
		for kind, n := range c.Objects {
			ch <- prometheus.MustNewConstMetric(descObjects, prometheus.GaugeValue, float64(n), kind)
		}
		ch <- prometheus.MustNewConstMetric(descGen, prometheus.CounterValue, float64(c.Gen))
		ids = c.ENIs
		if c.PublicIP.IsValid() {
			publicIPs = append(publicIPs, c.PublicIP)
		}
	}
	sw := m.sw
	if sw == nil {
		return
	}
	for _, id := range ids {
		c := sw.RecordCounters(id)
		ch <- prometheus.MustNewConstMetric(descRecPackets, prometheus.CounterValue, float64(c.PacketsIn), id, "in")
		ch <- prometheus.MustNewConstMetric(descRecPackets, prometheus.CounterValue, float64(c.PacketsOut), id, "out")
		ch <- prometheus.MustNewConstMetric(descRecBytes, prometheus.CounterValue, float64(c.BytesIn), id, "in")
		ch <- prometheus.MustNewConstMetric(descRecBytes, prometheus.CounterValue, float64(c.BytesOut), id, "out")
		ch <- prometheus.MustNewConstMetric(descRecFlows, prometheus.GaugeValue, float64(c.Flows), id)
		ch <- prometheus.MustNewConstMetric(descRecICMP, prometheus.CounterValue, float64(c.ICMPSent), id, "sent")
		ch <- prometheus.MustNewConstMetric(descRecICMP, prometheus.CounterValue, float64(c.ICMPLimited), id, "rate_limited")
		for reason, n := range c.Drops {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(descRecDrops, prometheus.CounterValue, float64(n), id, reason)
			}
		}
	}
	c := sw.Counters()
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(c.Packets))
	ch <- prometheus.MustNewConstMetric(descFlows, prometheus.GaugeValue, float64(c.Flows))
	ch <- prometheus.MustNewConstMetric(descFlowLimit, prometheus.GaugeValue, float64(c.FlowLimit))
	for reason, n := range c.Drops {
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(descICMPErrors, prometheus.CounterValue, float64(c.ICMPSent), "sent")
	ch <- prometheus.MustNewConstMetric(descICMPErrors, prometheus.CounterValue, float64(c.ICMPLimited), "rate_limited")
	for _, ip := range publicIPs {
		a := ip.As4()
		pub := binary.BigEndian.Uint32(a[:])
		for _, proto := range []uint8{6, 17, 1} {
			n := sw.Conntrack().PATInUse(pub, proto)
			ch <- prometheus.MustNewConstMetric(descNATPortsUsed, prometheus.GaugeValue, float64(n), ip.String(), control.ProtocolName(proto))
		}
	}
}
