package park

import (
	"container/heap"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agimo/agimo/route"
)

// The Lot holds connections whose request waits for a cold service
// without a goroutine, a front end's context or a read buffer each: the
// front end takes the socket over, keeps what it must replay (an
// HTTP/1.1 request head, a TLS ClientHello) as bytes, and one epoll loop
// watches every parked connection for its client leaving and for its
// deadline (a heap, not a timer each). On readiness
// the entry's Owner gets the connection back, on a goroutine of the
// lot's, to serve it as if it had just arrived. A parked request costs
// ~2 KiB instead of ~26 KiB (issue 5: ≤ 8 KiB per parked request, 10,000
// released within 100 ms).
type Lot struct {
	stopping <-chan struct{}
	epfd     int // epoll set of parked connections, for EPOLLRDHUP
	wakefd   int // eventfd in the set, to stop the loop

	mu      sync.Mutex // guards entries, byRoute, due, wakeAt, nextID, closed, quit
	entries map[uint64]*Entry
	byRoute map[*route.Route]map[uint64]*Entry // a route is here while its releaser runs
	due     dueHeap                            // by deadline, for the loop's timeout
	// wakeAt is when the loop wakes next (zero: not before an event):
	// an entry due earlier wakes it through wakefd to wait less.
	wakeAt time.Time
	nextID uint64
	closed bool
	quit   bool // the loop ends (Close)

	wg sync.WaitGroup // the epoll loop, releasers, releases and refusals
}

// Owner is the front end a parked connection goes back to.
type Owner interface {
	// Release serves the entry's request, its service now ready. The
	// entry is off the parked count; its connection and slot are the
	// owner's.
	Release(e *Entry)
	// Refuse answers the entry's request with 503 and msg (timeout,
	// shutdown). The lot closes the connection and frees its slot after.
	Refuse(e *Entry, msg string)
	// Gone notes that the entry's client left (reset its connection)
	// while parked: nobody to answer, the connection closed, the gauges
	// ended. It runs on the lot's loop and must not block: it only
	// records (the access log line).
	Gone(e *Entry)
}

// Slot is a connection's place under max_connections, freed once its
// socket is closed.
type Slot interface{ Release() }

// Entry is one parked connection. The front end fills the exported
// fields; the request it holds has been counted active and parked
// (route.Route.TryPark), and the lot ends both unless it releases it.
type Entry struct {
	Route *route.Route
	Conn  net.Conn // the socket itself, so that epoll can watch it
	Slot  Slot     // may be nil
	Head  []byte   // what the owner replays on release
	Start time.Time
	Owner Owner

	id       uint64
	deadline time.Time
	due      int // index in Lot.due
	fd       int
	closed   bool // set under Lot.mu once removed
}

// NewLot starts an empty lot. Parked requests get 503 once stopping is
// closed.
func NewLot(stopping <-chan struct{}) (*Lot, error) {
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
	l := &Lot{stopping: stopping, epfd: epfd, wakefd: wakefd, entries: make(map[uint64]*Entry), byRoute: make(map[*route.Route]map[uint64]*Entry)}
	l.wg.Add(1)
	go l.loop()
	return l, nil
}

// Add parks e until its route is ready or deadline passes, and returns at
// once.
func (l *Lot) Add(e *Entry, deadline time.Time) {
	fd := -1
	// Under TLS the socket is below the *tls.Conn (its NetConn): epoll
	// watches it for hang-ups only, never reads.
	c := e.Conn
	for {
		if sc, ok := c.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				rc.Control(func(f uintptr) { fd = int(f) })
			}
			break
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.finish(e, "agimo is shutting down")
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
	e.deadline = deadline
	heap.Push(&l.due, e)
	if l.wakeAt.IsZero() || deadline.Before(l.wakeAt) {
		// The loop waits longer than this entry may: wake it once.
		l.wakeAt = deadline
		l.wake()
	}
	rs, running := l.byRoute[e.Route]
	if !running {
		rs = make(map[uint64]*Entry)
		l.byRoute[e.Route] = rs
		l.wg.Add(1)
		go l.releaser(e.Route)
	}
	rs[e.id] = e
	l.mu.Unlock()
}

// remove takes e out of the lot. l.mu must be held. It reports false if e
// was already removed.
func (l *Lot) remove(e *Entry) bool {
	if e.closed {
		return false
	}
	e.closed = true
	delete(l.entries, e.id)
	delete(l.byRoute[e.Route], e.id)
	if e.fd >= 0 {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, e.fd, nil)
	}
	heap.Remove(&l.due, e.due)
	return true
}

// wake interrupts the loop's epoll_wait.
func (l *Lot) wake() {
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(l.wakefd, one[:])
}

// loop closes the connections of clients that leave while parked, and
// answers the requests whose deadline passes (expire).
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
func (l *Lot) loop() {
	defer l.wg.Done()
	events := make([]unix.EpollEvent, 256)
	for {
		l.mu.Lock()
		if l.quit {
			l.mu.Unlock()
			return
		}
		l.wakeAt = time.Time{}
		if len(l.due) > 0 {
			l.wakeAt = l.due[0].deadline
		}
		timeout := -1 // none: until an event
		if !l.wakeAt.IsZero() {
			timeout = waitMillis(time.Until(l.wakeAt))
		}
		l.mu.Unlock()
		n, err := unix.EpollWait(l.epfd, events, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		l.expire()
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				// Woken by Add or Close: empty the eventfd (it is
				// level-triggered), then look at the deadlines again.
				var buf [8]byte
				_, _ = unix.Read(l.wakefd, buf[:])
				continue
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
				e.Owner.Gone(e)
			}
		}
	}
}

// releaser waits for r to become ready and releases its parked requests;
// it ends when none is left. One runs per route with parked requests.
func (l *Lot) releaser(r *route.Route) {
	defer l.wg.Done()
	for {
		st := r.Ready.State()
		l.mu.Lock()
		if len(l.byRoute[r]) == 0 {
			delete(l.byRoute, r)
			l.mu.Unlock()
			return
		}
		var batch []*Entry
		if st.Ready || l.closed {
			for _, e := range l.byRoute[r] {
				l.remove(e)
				batch = append(batch, e)
			}
		}
		l.mu.Unlock()
		for _, e := range batch {
			if !st.Ready {
				l.finish(e, "agimo is shutting down")
				continue
			}
			r.Released(e.Start)
			l.release(e)
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-st.Changed():
		case <-l.stopping:
			l.mu.Lock()
			l.closed = true
			l.mu.Unlock()
		}
	}
}

// release hands e back to its owner, on a goroutine of its own as a fresh
// connection would have.
func (l *Lot) release(e *Entry) {
	e.Route.Unpark()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		e.Owner.Release(e)
	}()
}

// expire answers the requests still parked at their deadline.
func (l *Lot) expire() {
	now := time.Now()
	var late []*Entry
	l.mu.Lock()
	for len(l.due) > 0 && !l.due[0].deadline.After(now) {
		e := l.due[0]
		l.remove(e)
		late = append(late, e)
	}
	l.mu.Unlock()
	for _, e := range late {
		e.Route.M.Timeouts.Inc()
		l.finish(e, "service "+e.Route.Host+" did not become ready within "+e.Route.Timeout.String())
	}
}

// finish has a removed entry refused by its owner, then closes it.
func (l *Lot) finish(e *Entry, msg string) {
	l.done(e)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer e.close()
		e.Owner.Refuse(e, msg)
	}()
}

// close closes a removed entry's socket and frees its slot.
func (e *Entry) close() {
	e.Conn.Close()
	if e.Slot != nil {
		e.Slot.Release()
	}
}

// done ends the gauges of a request that leaves the lot unanswered by
// the upstream.
func (l *Lot) done(e *Entry) {
	e.Route.Unpark()
	e.Route.EndRequest()
}

// Close stops the loop after the releasers have answered everything, and
// waits for every goroutine of the lot.
func (l *Lot) Close() {
	l.mu.Lock()
	l.closed, l.quit = true, true
	l.mu.Unlock()
	l.wake()
	l.wg.Wait()
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
}
