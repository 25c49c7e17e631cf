package edge

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// Protocols, the "protocol" label of agimo_edge_connections_total.
const (
	protoH1          = "h1"          // HTTP/1.x, on either port
	protoH2C         = "h2c"         // HTTP/2 with prior knowledge on the plain port
	protoH2          = "h2"          // HTTP/2 over TLS (ALPN "h2")
	protoPassthrough = "passthrough" // TLS passed through unterminated
)

// reasonShutdown labels connections closed by Close while being sorted.
const reasonShutdown = "shutdown"

type edgeMetrics struct {
	set   *metrics.Set
	conns map[string]*metrics.Counter
}

func newEdgeMetrics(set *metrics.Set) *edgeMetrics {
	m := &edgeMetrics{set: set, conns: make(map[string]*metrics.Counter)}
	for _, p := range []string{protoH1, protoH2C, protoH2, protoPassthrough} {
		m.conns[p] = set.GetOrCreateCounter(fmt.Sprintf("agimo_edge_connections_total{protocol=%q}", p))
	}
	return m
}

func (m *edgeMetrics) connection(protocol string) { m.conns[protocol].Inc() }

// unsorted counts a connection closed before it reached a front end:
// on the plain port before its first bytes told HTTP/1.x from HTTP/2, on
// either port at shutdown. The reasons
// are few (those of reason, and shutdown): the set keeps one series each.
func (m *edgeMetrics) unsorted(reason string) {
	m.set.GetOrCreateCounter(fmt.Sprintf("agimo_edge_unsorted_total{reason=%q}", reason)).Inc()
}

// handshakeError counts a failed handshake on the TLS port. reason's
// values are bounded: TLS alert names come from a fixed table.
func (m *edgeMetrics) handshakeError(reason string) {
	m.set.GetOrCreateCounter(fmt.Sprintf("agimo_tls_handshake_errors_total{reason=%q}", reason)).Inc()
}
