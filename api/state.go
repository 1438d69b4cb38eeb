package api

import "time"

// Flow is one conntrack entry as the API shows it.
type Flow struct {
	Proto    string    `json:"proto"`
	OrigSrc  string    `json:"orig_src"`
	OrigDst  string    `json:"orig_dst"`
	ReplySrc string    `json:"reply_src"`
	ReplyDst string    `json:"reply_dst"`
	State    string    `json:"state"`
	ENIID    string    `json:"eni_id"`
	Expires  time.Time `json:"expires"`
}

// Stats are data path counters, global or of one record.
type Stats struct {
	ID           string            `json:"id"` // the record, or "global"
	PacketsIn    uint64            `json:"packets_in"`
	PacketsOut   uint64            `json:"packets_out"`
	BytesIn      uint64            `json:"bytes_in"`
	BytesOut     uint64            `json:"bytes_out"`
	Packets      uint64            `json:"packets"`   // frames received (global) or in+out (record)
	Forwarded    uint64            `json:"forwarded"` // frames delivered to a port
	Flows        uint64            `json:"flows"`
	FlowLimit    uint64            `json:"flow_limit,omitempty"`
	Translations uint64            `json:"translations"`
	Drops        map[string]uint64 `json:"drops"`
	// ICMP errors roam originated about the record's packets (global: all),
	// and those the rate limit suppressed.
	ICMPErrorsSent    uint64 `json:"icmp_errors_sent,omitempty"`
	ICMPErrorsLimited uint64 `json:"icmp_errors_limited,omitempty"`
}

// FlushResult is what a conntrack flush removed.
type FlushResult struct {
	ID      string `json:"id"` // the record, or "all"
	Flushed int    `json:"flushed"`
}

// Dump is the whole committed state (GET /v1/state), for backups and tests.
type Dump struct {
	Gen            uint64      `json:"gen"`
	Subnets        []*Subnet   `json:"subnets"`
	SecurityGroups []*Group    `json:"security_groups"`
	Instances      []*Instance `json:"instances"`
	ENIs           []*ENI      `json:"enis"`
	EIPs           []*Address  `json:"eips"`
	// Problems lists violated invariants of the state and of the config
	// published from it; empty when all is consistent (it always should
	// be).
	Problems []string `json:"problems,omitempty"`
}
