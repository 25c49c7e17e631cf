package route

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/agimo/agimo/stats"
)

// maxCycle bounds the precomputed pick sequence of a weighted rule: above
// it (weights whose sum, divided by their greatest common divisor, is
// larger) each pick is a random draw instead.
const maxCycle = 4096

// picker chooses a weighted rule's route per request in proportion to the
// weights (Gateway API backendRefs[].weight: a backend's share is its
// weight over the sum; weight 0 is never picked). It precomputes one cycle
// of nginx's smooth weighted round-robin, which spreads each backend's
// picks evenly over the cycle, and walks it with an atomic counter: exact
// proportions over every cycle, no lock, no allocation. Weights too large
// for a cycle are drawn at random over their cumulative sums.
type picker struct {
	cycle []*Route
	n     atomic.Uint32
	// For random draws: routes with their cumulative weights.
	routes []*Route
	cum    []uint64
}

// newPicker returns the picker of backends, or nil if every weight is 0.
func newPicker(backends []Backend) *picker {
	g, sum := 0, uint64(0)
	for _, b := range backends {
		g = gcd(g, b.Weight)
		sum += uint64(b.Weight)
	}
	if sum == 0 {
		return nil
	}
	p := &picker{}
	if sum/uint64(g) > maxCycle {
		for _, b := range backends {
			if b.Weight > 0 {
				p.routes = append(p.routes, b.Route)
				p.cum = append(p.cum, uint64(b.Weight)+lastOr0(p.cum))
			}
		}
		return p
	}
	total := int(sum / uint64(g))
	current := make([]int, len(backends))
	p.cycle = make([]*Route, total)
	for i := range p.cycle {
		best := -1
		for j, b := range backends {
			current[j] += b.Weight / g
			if b.Weight > 0 && (best < 0 || current[j] > current[best]) {
				best = j
			}
		}
		current[best] -= total
		p.cycle[i] = backends[best].Route
	}
	return p
}

// next picks the route of one request.
func (p *picker) next() *Route {
	if p.cycle != nil {
		return p.cycle[int((p.n.Add(1)-1)%uint32(len(p.cycle)))]
	}
	x := rand.Uint64N(p.cum[len(p.cum)-1])
	i, _ := slices.BinarySearch(p.cum, x+1)
	return p.routes[i]
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func lastOr0(s []uint64) uint64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// replace swaps the routes CarryOver kept for their predecessors.
func (p *picker) replace(kept map[*Route]*Route) {
	for _, s := range [][]*Route{p.cycle, p.routes} {
		for i, r := range s {
			if k := kept[r]; k != nil {
				s[i] = k
			}
		}
	}
}

// weigh readies a rule's weighted pick: its Route is nil, or, if every
// weight is 0, a route that answers 500 (Gateway API: a rule whose
// backendRefs all weigh 0 "MUST receive a 500").
func (rule *Rule) weigh(set *metrics.Set) {
	rule.pick = newPicker(rule.Backends)
	rule.Route = nil
	if rule.pick != nil {
		return
	}
	first := rule.Backends[0].Route
	svc := first.Svc
	svc.Fixed, svc.Filters = http.StatusInternalServerError, nil
	rule.Route = &Route{Host: first.Host, Svc: svc, M: stats.NewHost(set, first.Host), name: routeName(&svc)}
}
