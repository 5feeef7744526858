package bench

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// TLS for https:// targets: the client config a run shares, what a worker
// records of each handshake, and how a failed handshake is classified.
// The handshake runs right after the TCP connect, on the same deadline as
// the request (Options.Timeout), and is timed from connect done to
// handshake done.

// tlsGroups maps the --tls-groups names to crypto/tls key exchanges.
var tlsGroups = map[string]tls.CurveID{
	"x25519":             tls.X25519,
	"p256":               tls.CurveP256,
	"p384":               tls.CurveP384,
	"p521":               tls.CurveP521,
	"x25519mlkem768":     tls.X25519MLKEM768,
	"secp256r1mlkem768":  tls.SecP256r1MLKEM768,
	"secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
}

func groupNames() string {
	names := make([]string, 0, len(tlsGroups))
	for n := range tlsGroups {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// maxTLSErrorMessages bounds the distinct handshake error messages kept;
// the rest are counted under otherTLSErrors.
const (
	maxTLSErrorMessages = 10
	otherTLSErrors      = "(other messages)"
	maxTLSErrorLen      = 240
)

// clientTLS is the TLS side of a run: the config every connection uses
// and how it was set up (for the report).
type clientTLS struct {
	conf   *tls.Config
	verify string // "system roots", "cacert FILE", "insecure (not verified)"
}

// newClientTLS builds the run's client config from o (defaults applied)
// and the resolved target. The error names the flag.
func newClientTLS(o Options, t target) (*clientTLS, error) {
	c := &tls.Config{
		ServerName: t.name,
		NextProtos: []string{"http/1.1"},
		MinVersion: tls.VersionTLS12,
	}
	if o.SNI != "" {
		c.ServerName = o.SNI
	}
	if o.TLSMin == TLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	for _, g := range o.TLSGroups {
		c.CurvePreferences = append(c.CurvePreferences, tlsGroups[strings.ToLower(g)])
	}
	ct := &clientTLS{conf: c, verify: "system roots"}
	switch {
	case o.Insecure:
		c.InsecureSkipVerify = true
		ct.verify = "insecure (not verified)"
	case o.CACert != "":
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", o.CACert)
		}
		c.RootCAs = pool
		ct.verify = "cacert " + o.CACert
	}
	if o.TLSResume {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(max(64, 2*o.Concurrency))
	}
	return ct, nil
}

// tlsParams is what one handshake negotiated.
type tlsParams struct {
	version, suite uint16
	group          tls.CurveID
	alpn           string
}

// noteHandshake records a completed handshake of the worker.
func (w *worker) noteHandshake(st *tls.ConnectionState) {
	w.handshakes++
	if st.DidResume {
		w.resumed++
	}
	p := tlsParams{st.Version, st.CipherSuite, st.CurveID, st.NegotiatedProtocol}
	if !slices.Contains(w.tlsSeen, p) {
		w.tlsSeen = append(w.tlsSeen, p)
	}
}

// handshakeFailed classifies a failed handshake and keeps its message: a
// timeout is ErrTimeout (a stalled target, or the run being cut), anything
// else is ErrTLS: an alert from the target, a certificate that did not
// verify, a reply that is not TLS, or the connection ending or reset
// during the handshake.
func (w *worker) handshakeFailed(err error) int {
	if k := classify(err); k == kindTimeout {
		return k
	}
	msg := tlsErrorMessage(err)
	if w.tlsErrs == nil {
		w.tlsErrs = map[string]int64{}
	}
	if _, ok := w.tlsErrs[msg]; !ok && len(w.tlsErrs) >= maxTLSErrorMessages {
		msg = otherTLSErrors
	}
	w.tlsErrs[msg]++
	return kindTLS
}

// tlsErrorMessage is err's text without the per-connection addresses that
// would make every failure distinct.
func tlsErrorMessage(err error) string {
	var msg string
	var op *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		msg = "connection reset by the target during the handshake"
	case isEOF(err):
		msg = "the target closed the connection during the handshake"
	case errors.As(err, &op) && op.Err != nil:
		msg = op.Op + ": " + op.Err.Error()
	default:
		msg = err.Error()
	}
	if len(msg) > maxTLSErrorLen {
		msg = msg[:maxTLSErrorLen] + "..."
	}
	return msg
}

// mergeTLS adds the workers' TLS records to r (an https run).
func (p *phase) mergeTLS(r *Result) {
	s := &TLSStats{
		ServerName:    p.tls.conf.ServerName,
		Verify:        p.tls.verify,
		MinVersion:    p.o.TLSMin,
		ResumeEnabled: p.tls.conf.ClientSessionCache != nil,
		Errors:        map[string]int64{},
	}
	if net.ParseIP(s.ServerName) != nil {
		s.ServerName = "" // TLS sends no IP address as SNI
	}
	h := newHist()
	var seen []tlsParams
	for _, w := range p.workers {
		h.Merge(w.hs)
		s.Handshakes += w.handshakes
		s.Resumed += w.resumed
		for _, t := range w.tlsSeen {
			if !slices.Contains(seen, t) {
				seen = append(seen, t)
			}
		}
		for m, n := range w.tlsErrs {
			s.Errors[m] += n
		}
	}
	if len(s.Errors) > maxTLSErrorMessages { // several workers' distinct ones
		keys := make([]string, 0, len(s.Errors))
		for m := range s.Errors {
			keys = append(keys, m)
		}
		sort.Slice(keys, func(i, j int) bool { return s.Errors[keys[i]] > s.Errors[keys[j]] })
		for _, m := range keys[maxTLSErrorMessages-1:] {
			if m != otherTLSErrors {
				s.Errors[otherTLSErrors] += s.Errors[m]
				delete(s.Errors, m)
			}
		}
	}
	if len(s.Errors) == 0 {
		s.Errors = nil
	}
	s.Handshake = percentiles(h)
	if s.Handshakes > 0 {
		s.ResumedShare = float64(s.Resumed) / float64(s.Handshakes)
	}
	if p.elapsed > 0 {
		s.PerSecond = float64(s.Handshakes) / p.elapsed.Seconds()
	}
	if latSum := r.Latency.Mean.Seconds() * float64(r.OK); latSum > 0 {
		s.HandshakeShare = min(1, s.Handshake.Mean.Seconds()*float64(s.Handshakes)/latSum)
	}
	var versions, suites, groups, alpns []string
	for _, t := range seen {
		versions = appendNew(versions, tls.VersionName(t.version))
		suites = appendNew(suites, tls.CipherSuiteName(t.suite))
		g := "none (RSA key exchange)"
		if t.group != 0 {
			g = t.group.String()
		}
		groups = appendNew(groups, g)
		a := t.alpn
		if a == "" {
			a = "none"
		}
		alpns = appendNew(alpns, a)
	}
	s.Version, s.CipherSuite = strings.Join(versions, ", "), strings.Join(suites, ", ")
	s.Group, s.ALPN = strings.Join(groups, ", "), strings.Join(alpns, ", ")
	r.TLS = s
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}
