package route

import (
	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/watch"
)

// AppProtocolH2C is the appProtocol of a Service port that speaks HTTP/2
// without TLS (KEP-3726's standard value).
const AppProtocolH2C = "kubernetes.io/h2c"

// H2C reports whether requests go to r's endpoints over h2c: protocol =
// "h2c", or protocol = "auto" (the default) and the EndpointSlice port's
// appProtocol is kubernetes.io/h2c, as the KEDA HTTP add-on decides.
func (r *Route) H2C(st *watch.State) bool {
	switch r.Svc.Protocol {
	case conf.ProtocolH2C:
		return true
	case conf.ProtocolHTTP1:
		return false
	}
	return st.AppProtocol == AppProtocolH2C
}
