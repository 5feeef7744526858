package bench

import (
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Error kinds, the keys of Result.Errors.
const (
	ErrRefused   = "refused"    // connect refused (nothing listens)
	ErrReset     = "reset"      // connection reset or broken pipe
	ErrTimeout   = "timeout"    // connect or request over Options.Timeout
	ErrBadStatus = "bad status" // an HTTP status outside 200..399
	ErrShortRead = "short read" // the connection ended before the whole response
	ErrProtocol  = "protocol"   // a response bench could not parse, or a tcp echo that differs
	// ErrTLS is a TLS handshake that failed other than by a timeout: an
	// alert from the target, a certificate that did not verify, a reply
	// that is not TLS, the connection closed or reset during the
	// handshake. TLSStats.Errors has the messages.
	ErrTLS   = "tls"
	ErrOther = "other"
)

// errKinds lists the kinds in report order; a worker counts them by index.
var errKinds = [...]string{ErrRefused, ErrReset, ErrTimeout, ErrBadStatus, ErrShortRead, ErrProtocol, ErrTLS, ErrOther}

const (
	kindRefused = iota
	kindReset
	kindTimeout
	kindBadStatus
	kindShortRead
	kindProtocol
	kindTLS
	kindOther
	numKinds
	kindOK = -1
)

// Percentiles summarises a latency histogram.
type Percentiles struct {
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p99_9_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// Quantile is one point of a latency distribution (for the HTML chart).
type Quantile struct {
	Percentile float64       `json:"percentile"` // 0..100
	Latency    time.Duration `json:"latency_ns"`
}

// Point is one bucket of the throughput series.
type Point struct {
	At       time.Duration `json:"at_ns"`    // bucket start, from the start of the measured phase
	Requests int64         `json:"requests"` // successful requests ending in the bucket
	Errors   int64         `json:"errors"`   // failed ones
}

// SeriesStep is the width of a throughput bucket.
const SeriesStep = 100 * time.Millisecond

// Result is what one run measured.
type Result struct {
	Label  string `json:"label"`
	Target string `json:"target"` // the resolved address
	// Protocol is "http", "https" (http over TLS) or "tcp".
	Protocol string `json:"protocol"`
	Conn     string `json:"conn"`
	// Concurrency, RequestsPerConn and Rate echo the options.
	Concurrency     int     `json:"concurrency"`
	RequestsPerConn int     `json:"requests_per_conn"`
	Rate            float64 `json:"rate"`

	// Requests counts every attempt: Requests == OK + sum(Errors).
	Requests int64            `json:"requests"`
	OK       int64            `json:"ok"`
	Errors   map[string]int64 `json:"errors"`
	// RPS is OK / Duration.
	RPS      float64       `json:"rps"`
	Duration time.Duration `json:"duration_ns"`
	// Interrupted says the context ended the run early; the figures cover
	// what was measured until then.
	Interrupted bool `json:"interrupted"`

	// Latency of successful requests (see the package doc for where it
	// starts); Connect is the time connect(2) took, per opened conn.
	Latency      Percentiles `json:"latency"`
	Connect      Percentiles `json:"connect"`
	Distribution []Quantile  `json:"distribution"`

	// ConnsOpened counts successful connects; PortsUsed the distinct local
	// (ephemeral) ports they used. ClosedByServer counts conns whose EOF
	// bench saw before it closed them, ClosedByClient the others.
	ConnsOpened    int   `json:"conns_opened"`
	PortsUsed      int   `json:"ports_used"`
	ClosedByServer int64 `json:"closed_by_server"`
	ClosedByClient int64 `json:"closed_by_client"`

	// TimeWaitClient / TimeWaitTarget count the TIME_WAIT sockets this
	// run's connections left (sock_diag, by 4-tuple, once closes settled):
	// on bench's side (remote = the target) and on the target's (local =
	// the target). A local port the kernel reused within the run (it
	// recycles TIME_WAIT, tcp_tw_reuse) leaves one socket, so the counts
	// can be below the closes. A target behind a proxy has its own back-side
	// connections, whose TIME_WAIT is not counted here. TimeWaitErr says
	// why the census failed, if it did (the counts are then 0).
	TimeWaitClient int    `json:"time_wait_client"`
	TimeWaitTarget int    `json:"time_wait_target"`
	TimeWaitErr    string `json:"time_wait_error,omitempty"`

	// Series is the throughput per SeriesStep over the measured phase.
	Series []Point `json:"series"`

	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"` // tcp: echoed payload; http: not counted (0)

	// CPU is the user+system CPU time of the bench process over the
	// measured phase (getrusage): the client's own cost. Per request it
	// shows what a short connection costs the client over a long one.
	CPU time.Duration `json:"cpu_ns"`

	// TLS is set for an https:// target, nil otherwise.
	TLS *TLSStats `json:"tls,omitempty"`
}

// TLSStats is what an https run saw of TLS. A handshake runs once per
// connection, right after its TCP connect; it is timed from connect done to
// handshake done (Connect is the TCP part, Latency includes both when the
// request opened the connection).
type TLSStats struct {
	// Handshakes counts completed handshakes: one per connection that got
	// past it, so ConnsOpened - Handshakes failed or were cut. Resumed
	// counts those that resumed an earlier session (Options.TLSResume and
	// a target that issues tickets); ResumedShare is Resumed/Handshakes.
	Handshakes   int64   `json:"handshakes"`
	Resumed      int64   `json:"resumed"`
	ResumedShare float64 `json:"resumed_share"`
	// PerSecond is Handshakes / Duration.
	PerSecond float64 `json:"handshakes_per_s"`
	// Handshake is the handshake time of the completed handshakes.
	Handshake Percentiles `json:"handshake"`
	// HandshakeShare is the share of the successful requests' summed
	// latency spent in handshakes: Handshake.Mean*Handshakes /
	// (Latency.Mean*OK), at most 1. Near 1/(1+response time/handshake
	// time) for short connections, near 0 for long ones.
	HandshakeShare float64 `json:"handshake_share"`
	// Version ("TLS 1.3"), CipherSuite ("TLS_AES_128_GCM_SHA256"), Group
	// (the key exchange, "X25519") and ALPN ("http/1.1", or "none") that
	// were negotiated; several, comma-separated, if connections differed.
	Version     string `json:"version"`
	CipherSuite string `json:"cipher_suite"`
	Group       string `json:"group"`
	ALPN        string `json:"alpn"`
	// ServerName is the SNI sent ("" when the name is an IP address,
	// which TLS does not send); Verify says how the certificate was
	// checked: "system roots", "cacert FILE" or "insecure (not verified)".
	ServerName    string `json:"server_name"`
	Verify        string `json:"verify"`
	MinVersion    string `json:"min_version"`
	ResumeEnabled bool   `json:"resume_enabled"`
	// Errors counts the failed handshakes' messages (the alert, the
	// verification error ...): at most 10 distinct, the rest counted
	// under "(other messages)". Their count is Errors["tls"] of the result.
	Errors map[string]int64 `json:"errors,omitempty"`
}

// ErrorCount is the sum of Errors.
func (r *Result) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// newHist returns a latency histogram in microseconds, 1 µs to 1 hour.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
}

func recordDur(h *hdrhistogram.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < 1 {
		us = 1
	}
	_ = h.RecordValue(us) // beyond an hour is clamped by the error: dropped
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	at := func(q float64) time.Duration { return time.Duration(h.ValueAtQuantile(q)) * time.Microsecond }
	return Percentiles{
		P50: at(50), P90: at(90), P99: at(99), P999: at(99.9),
		Max:  time.Duration(h.Max()) * time.Microsecond,
		Mean: time.Duration(h.Mean() * float64(time.Microsecond)),
	}
}

// distribution samples h for the percentile chart.
func distribution(h *hdrhistogram.Histogram) []Quantile {
	if h.TotalCount() == 0 {
		return nil
	}
	qs := []float64{0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97, 99, 99.5, 99.9, 99.95, 99.99, 100}
	out := make([]Quantile, 0, len(qs))
	for _, q := range qs {
		v := h.ValueAtQuantile(q)
		if q == 100 {
			v = h.Max()
		}
		out = append(out, Quantile{Percentile: q, Latency: time.Duration(v) * time.Microsecond})
	}
	return out
}
