package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/agimo/agimo/tunnel"
)

// The parking lot holds bodiless requests for cold services without a
// goroutine, a fasthttp context or a read buffer each: the connection is
// hijacked, the request head kept as bytes, and one epoll loop watches
// every parked connection for its client leaving. On readiness the head is
// replayed into fasthttp (ServeConn), which then handles the request, and
// the keep-alive connection after it, as if it had just arrived. A parked
// request costs ~2 KiB instead of ~26 KiB (issue 5: ≤ 8 KiB per parked
// request, 10,000 released within 100 ms). Requests with a body keep the
// goroutine park (park.go), as their body is already partly read.
type lot struct {
	p      *Proxy
	epfd   int // epoll set of parked connections, for EPOLLRDHUP
	wakefd int // eventfd in the set, to stop the loop

	mu      sync.Mutex // guards entries, byRoute, nextID, closed
	entries map[uint64]*lotEntry
	byRoute map[*route]map[uint64]*lotEntry // a route is here while its releaser runs
	nextID  uint64
	closed  bool

	wg sync.WaitGroup // the epoll loop, releasers, replays and answers
}

type lotEntry struct {
	id     uint64
	r      *route
	conn   net.Conn  // fasthttp's hijacked conn: buffered bytes, then the socket
	slot   *connSlot // the connection's max_connections slot, freed on close
	head   []byte    // the request head, replayed on release
	start  time.Time
	timer  *time.Timer
	fd     int
	closed bool // set under lot.mu once removed
}

func newLot(p *Proxy) (*lot, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	// The wake eventfd carries id 0; parked entries count from 1.
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, err
	}
	l := &lot{p: p, epfd: epfd, wakefd: wakefd, entries: make(map[uint64]*lotEntry), byRoute: make(map[*route]map[uint64]*lotEntry)}
	l.wg.Add(1)
	go l.loop()
	return l, nil
}

// canPark reports whether a request can wait in the lot: it has no body
// (so nothing of it sits in fasthttp's buffers but its head) and fasthttp
// kept its raw head to replay.
func canPark(ctx *fasthttp.RequestCtx) bool {
	_, hasBody := requestBody(ctx)
	return !hasBody && len(ctx.Request.Header.RawHeaders()) > 0
}

// park hijacks ctx's connection into the lot. The caller has counted the
// request as active; the lot's release, timeout or client-gone path ends
// that. It returns false if the route's max_parked is reached.
func (l *lot) park(ctx *fasthttp.RequestCtx, r *route, deadline time.Time) bool {
	if r.parked.Add(1) > r.maxParked {
		r.parked.Add(-1)
		return false
	}
	r.m.parked.Inc()
	l.p.beginCold(r)
	h := &ctx.Request.Header
	head := make([]byte, 0, len(h.Method())+len(h.RequestURI())+len(h.Protocol())+4+len(h.RawHeaders()))
	head = append(append(append(head, h.Method()...), ' '), h.RequestURI()...)
	head = append(append(append(head, ' '), h.Protocol()...), "\r\n"...)
	head = append(head, h.RawHeaders()...)
	e := &lotEntry{r: r, head: head, start: time.Now()}
	ctx.HijackSetNoResponse(true)
	handOff(ctx, func() { l.done(e) })
	ctx.Hijack(func(c net.Conn) {
		e.conn = c
		l.add(e, deadline)
	})
	return true
}

// add registers e, runs on fasthttp's hijack goroutine, and returns at
// once: with KeepHijackedConns, the connection stays open.
func (l *lot) add(e *lotEntry, deadline time.Time) {
	// Keep the socket, not fasthttp's hijacked conn, which holds the
	// connection's whole read buffer (max_header_size) for the few bytes,
	// if any, the client sent after its head: those go after the head.
	raw, early, slot := takeOver(e.conn)
	e.slot = slot
	// A request parked again after a replay sits on a replayConn whose
	// head is consumed by now, like every buffer above the socket.
	for {
		u, ok := raw.(interface{ UnsafeConn() net.Conn })
		if !ok {
			break
		}
		raw = u.UnsafeConn()
	}
	e.conn, e.head = raw, append(e.head, early...)
	fd := -1
	if sc, ok := raw.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(f uintptr) { fd = int(f) })
		}
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.finish(e, fasthttp.StatusServiceUnavailable, "agimo is shutting down")
		return
	}
	l.nextID++
	e.id, e.fd = l.nextID, fd
	l.entries[e.id] = e
	if fd >= 0 {
		// Level-triggered, without EPOLLIN: only a hang-up or half-close
		// wakes the loop, not the data of a pipelined request. (EPOLLHUP
		// and EPOLLERR are always reported.)
		ev := unix.EpollEvent{Events: unix.EPOLLRDHUP}
		ev.Fd, ev.Pad = int32(uint32(e.id)), int32(uint32(e.id>>32))
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	e.timer = time.AfterFunc(time.Until(deadline), func() { l.expire(e.id) })
	rs, running := l.byRoute[e.r]
	if !running {
		rs = make(map[uint64]*lotEntry)
		l.byRoute[e.r] = rs
		l.wg.Add(1)
		go l.releaser(e.r)
	}
	rs[e.id] = e
	l.mu.Unlock()
}

// remove takes e out of the lot. l.mu must be held. It reports false if e
// was already removed.
func (l *lot) remove(e *lotEntry) bool {
	if e.closed {
		return false
	}
	e.closed = true
	delete(l.entries, e.id)
	delete(l.byRoute[e.r], e.id)
	if e.fd >= 0 {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, e.fd, nil)
	}
	e.timer.Stop()
	return true
}

// loop closes the connections of clients that leave while parked.
//
// A half-close (FIN: EPOLLRDHUP alone) does not withdraw a request: RFC
// 9112 §9.6 lets a client close its sending side once its request is
// sent, and the ready path serves such a client, as nginx does with a
// fast upstream. The request stays parked, and the entry is watched for
// a reset or error only (EPOLLRDHUP is level-triggered and would fire
// again and again). A reset (EPOLLHUP/EPOLLERR) is a client gone: its
// slot and gauges are freed at once. TCP cannot tell a half-close from a
// full close without writing, so a client that closed fully stays parked
// until its release or its timeout.
func (l *lot) loop() {
	defer l.wg.Done()
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				return // woken by close
			}
			l.mu.Lock()
			e := l.entries[id]
			if e != nil && ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) == 0 {
				// Half-closed: stays parked.
				mod := unix.EpollEvent{Events: unix.EPOLLHUP | unix.EPOLLERR, Fd: ev.Fd, Pad: ev.Pad}
				_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, e.fd, &mod)
				l.mu.Unlock()
				continue
			}
			gone := e != nil && l.remove(e)
			l.mu.Unlock()
			if gone {
				e.close()
				l.done(e)
			}
		}
	}
}

// releaser waits for r to become ready and releases its parked requests;
// it ends when none is left. One runs per route with parked requests.
func (l *lot) releaser(r *route) {
	defer l.wg.Done()
	for {
		st := r.ready.State()
		l.mu.Lock()
		if len(l.byRoute[r]) == 0 {
			delete(l.byRoute, r)
			l.mu.Unlock()
			return
		}
		var batch []*lotEntry
		if st.Ready || l.closed {
			for _, e := range l.byRoute[r] {
				l.remove(e)
				batch = append(batch, e)
			}
		}
		l.mu.Unlock()
		for _, e := range batch {
			if !st.Ready {
				l.finish(e, fasthttp.StatusServiceUnavailable, "agimo is shutting down")
				continue
			}
			waited := time.Since(e.start)
			r.m.parkTime.Update(waited.Seconds())
			r.cold.observe(waited)
			r.readyCold()
			l.replay(e)
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-st.Changed():
		case <-l.p.stopping:
			l.mu.Lock()
			l.closed = true
			l.mu.Unlock()
		}
	}
}

// replay hands the connection back to fasthttp with the request head in
// front, on a goroutine of its own as a fresh connection would have.
func (l *lot) replay(e *lotEntry) {
	unpark(e)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		// The replayed head's line is whole; what follows is another.
		ec := newClientConn(e.conn)
		ec.lineOpen, ec.slot = false, e.slot
		_ = l.p.srv.ServeConn(&replayConn{clientConn: ec, head: e.head, route: e.r, pending: true,
			retryAfter: e.r.cold.retryAfter(l.p.opts.RetryAfter)})
	}()
}

// expire answers a request still parked at its deadline.
func (l *lot) expire(id uint64) {
	l.mu.Lock()
	e := l.entries[id]
	ok := e != nil && l.remove(e)
	l.mu.Unlock()
	if ok {
		e.r.m.timeouts.Inc()
		l.finish(e, fasthttp.StatusServiceUnavailable, "service "+e.r.host+" did not become ready within "+e.r.timeout.String())
	}
}

// finish answers a removed entry with status and closes its connection.
func (l *lot) finish(e *lotEntry, status int, msg string) {
	l.done(e)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer e.close()
		resp := plainAnswer(status, e.r.cold.retryAfter(l.p.opts.RetryAfter), msg)
		_ = e.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(e.conn, resp); err == nil {
			// Bytes the client sent after its head may be unread.
			tunnel.Linger(e.conn)
		}
	}()
}

// close closes a removed entry's socket and frees its slot.
func (e *lotEntry) close() {
	e.conn.Close()
	e.slot.release()
}

// done ends the gauges of a request that leaves the lot unanswered by
// the upstream.
func (l *lot) done(e *lotEntry) {
	unpark(e)
	e.r.m.active.Dec()
}

// unpark takes e off its route's parked count and gauge.
func unpark(e *lotEntry) {
	e.r.parked.Add(-1)
	e.r.m.parked.Dec()
}

// close stops the loop after the releasers have answered everything, and
// waits for every goroutine of the lot.
func (l *lot) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(l.wakefd, one[:])
	l.wg.Wait()
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
}

// replayConn is a hijacked connection given back to fasthttp: it reads the
// parked request's head first, then whatever the client sent after it.
// The clientConn under it answers for the rest, as for any connection:
// EOF and request-line tracking, and the socket for watchClose and for
// the tunnel's splice (UnsafeConn, once fasthttp has read the head).
type replayConn struct {
	*clientConn
	head  []byte
	route *route
	// pending is true until the replayed request reaches the handler,
	// which then neither routes nor counts it again: it was counted when
	// it parked. Only fasthttp's goroutine for this connection touches it.
	pending bool
	// retryAfter is the Retry-After of a 503 to a request never handled.
	retryAfter int
}

// Close ends the replayed request's count if fasthttp closes the
// connection without handing the request to the handler (it counted
// when it parked, and only the handler ends that), and tells the client
// to retry unless fasthttp has answered it.
func (c *replayConn) Close() error {
	if c.pending {
		c.pending = false
		c.route.m.active.Dec()
		if !c.wrote {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c.clientConn.Conn, plainAnswer(fasthttp.StatusServiceUnavailable, c.retryAfter, "request not served; retry")); err == nil {
				c.linger = true
			}
		}
	}
	return c.clientConn.Close()
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.clientConn.Read(b)
}

var errNoSyscallConn = errors.New("connection has no file descriptor")
