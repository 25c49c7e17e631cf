package watch

import (
	"net"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// portName finds the name of the Service port whose port number is port.
// EndpointSlices carry the port's name and target port, not the Service
// port number, so the Service is needed to map one to the other.
func portName(svc *corev1.Service, port int32) (string, bool) {
	for _, p := range svc.Spec.Ports {
		if p.Port == port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return p.Name, true
		}
	}
	return "", false
}

// readyAddrs lists "ip:port" of every endpoint in slices that serves the
// named port and is ready and not terminating (discovery.k8s.io/v1: a nil
// Ready means ready, a nil Terminating means not terminating). The result
// is sorted and deduplicated, as an endpoint may sit in two slices while
// the EndpointSlice controller moves it.
//
// It also returns the port's appProtocol. The controller copies it from the
// Service port into every slice, so slices disagree only while it rewrites
// them; the smallest non-empty value is taken then, so that the answer does
// not depend on the cache's order and cannot flap between two events.
func readyAddrs(eps []*discoveryv1.EndpointSlice, name string) ([]string, string) {
	var out []string
	appProto := ""
	for _, es := range eps {
		port := int32(-1)
		for _, p := range es.Ports {
			pn := ""
			if p.Name != nil {
				pn = *p.Name
			}
			if pn == name && p.Port != nil && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
				port = *p.Port
				if p.AppProtocol != nil && *p.AppProtocol != "" && (appProto == "" || *p.AppProtocol < appProto) {
					appProto = *p.AppProtocol
				}
				break
			}
		}
		if port < 0 {
			continue
		}
		ps := strconv.Itoa(int(port))
		for _, ep := range es.Endpoints {
			c := ep.Conditions
			if (c.Ready != nil && !*c.Ready) || (c.Terminating != nil && *c.Terminating) || len(ep.Addresses) == 0 {
				continue
			}
			// All addresses of one endpoint are fungible (API docs): take the first.
			out = append(out, net.JoinHostPort(ep.Addresses[0], ps))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), appProto
}
