package proxy

// SetUpstreamConns lowers the cap on connections to one upstream endpoint
// (upstream.Pools.SetConns), so a test can fill a pool with a few requests.
func SetUpstreamConns(p *Proxy, n int) { p.core.Pools.SetConns(n) }
