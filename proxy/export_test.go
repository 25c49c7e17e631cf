package proxy

// SetUpstreamConns lowers the cap on connections to one upstream endpoint
// (upstreamConns), so a test can fill a pool with a few requests. Pools
// made before are dropped: call it while no request is in flight.
func SetUpstreamConns(p *Proxy, n int) {
	p.pools.closeAll()
	p.pools.mu.Lock()
	defer p.pools.mu.Unlock()
	p.pools.conns = n
}
