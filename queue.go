package emcache

import "sync"

// connQueue carries accepted connections from the listener goroutines to
// one worker: memcached's CQ. Pushes happen once per accepted connection
// and the worker takes everything at once, so a mutex and a slice are all
// it needs.
type connQueue struct {
	mu    sync.Mutex
	items []queuedConn
}

// push appends q and reports whether the queue was empty, that is whether
// the worker needs a wake-up: a non-empty queue has one pending already.
func (cq *connQueue) push(q queuedConn) (wasEmpty bool) {
	cq.mu.Lock()
	wasEmpty = len(cq.items) == 0
	cq.items = append(cq.items, q)
	cq.mu.Unlock()
	return wasEmpty
}

// popAll moves every queued connection to dst and returns it. The worker
// calls it after draining its notify fd, so nothing pushed is missed.
func (cq *connQueue) popAll(dst []queuedConn) []queuedConn {
	cq.mu.Lock()
	dst = append(dst, cq.items...)
	clear(cq.items)
	cq.items = cq.items[:0]
	cq.mu.Unlock()
	return dst
}
