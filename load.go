package emcache

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Loading on a miss, with the meta protocol's leases as the one stampede
// guard for both faces of the cache. A miss in GetOrLoad does what `mg
// <key> N<lease>` does: it stores an empty item with the win token (the
// lease item), so a network client asking meanwhile gets Z, not a second
// win, and the loaded value is stored only while that item is still there
// (storeReq.lease), so a set or delete during the load wins. Goroutines of
// this process that miss meanwhile wait for the load in a flight; when a
// network client holds the win, they wait for the store that ends it (its
// ms) or for the lease item to expire, then read again.

// DefaultLoadLease is Config.LoadLease's default: how long a load holds its
// key before a network client may win it (the N token clients commonly
// send is 30).
const DefaultLoadLease = 30 * time.Second

// Loader loads the value of key after a miss, for [Cache.GetOrLoad]: the
// value to store and return, and its TTL (0: no expiry). It runs in the
// goroutine of the caller that missed first, with that caller's context;
// the key is valid only during the call.
type Loader func(ctx context.Context, key []byte) (value []byte, ttl time.Duration, err error)

// PanicError is what the callers waiting on a load get when its Loader
// panicked. The goroutine that ran the loader panics again with Value once
// the key is released, as if the cache were not there.
type PanicError struct {
	// Value is what the loader panicked with.
	Value any
	// Stack is the loading goroutine's stack when it panicked.
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("emcache: loader panicked: %v", e.Value) }

// Unwrap returns Value when it is an error, so that errors.Is sees it.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// errLoaderExited is the waiters' error when the loader ended its goroutine
// (runtime.Goexit, as t.FailNow does) instead of returning.
const errLoaderExited = Error("emcache: loader exited its goroutine without returning")

// GetOrLoad returns the item under key, loading it with load on a miss.
// Concurrent misses on a key call one loader: the first caller runs it,
// the others wait for its result or until their own ctx is done (then
// ctx.Err()). A loader's error reaches every waiter, as a [*PanicError] if
// it panicked; either way the key is released, so that the next caller
// loads again. A waiter whose own context is live loads anew when the
// loader failed because the first caller's context ended.
//
// The loaded value is stored with the loader's TTL, unless the key was set
// or deleted during the load: the later write wins and the loaded value is
// only returned. It is returned, not stored, when it cannot be (too large,
// no memory).
//
// The load holds the key with memcached's lease, an empty item carrying
// the win token, for at most Config.LoadLease: a network client's `mg
// <key> N...` gets it with Z and no win, and Get and Touch here miss it.
// When a network client holds the win (its mg got W), GetOrLoad waits for
// its ms, or for the lease to end, and returns the value it stored without
// loading. With Config.RefreshAhead, a hit whose TTL is nearly over also
// reloads it in the background (see RefreshAhead).
func (c *Cache) GetOrLoad(ctx context.Context, key []byte, load Loader) (Item, error) {
	dst, it, l, err := c.leaseGet(nil, key)
	if err != nil {
		return Item{}, err
	}
	if l.state == leaseHit {
		return it, nil
	}
	_, it, err = c.resume(ctx, dst, key, it, l, load)
	return it, err
}

// leaseState is what leaseGet found.
type leaseState uint8

const (
	leaseHit     leaseState = iota // a value: the read is done
	leaseRefresh                   // a value, and the reader won its refresh
	leaseWon                       // a miss: the reader loads (flight)
	leaseJoined                    // a load by this process is on: wait for it (flight)
	leaseRemote                    // a network client holds the win: wait for its store
)

// lease is leaseGet's result beyond the item.
type lease struct {
	state leaseState
	// token is the raw CAS of the lease item (leaseWon) or of the item to
	// refresh (leaseRefresh); 0 when no lease item could be stored.
	token uint64
	// f is the flight to complete (leaseWon) or to wait on.
	f *flight
	// until is the remote lease item's expiry, and now the clock then.
	until, now uint32
}

// leaseTable holds the flights of the keys being loaded or waited for.
type leaseTable struct {
	// remote counts the flights that wait on a network client's lease: the
	// store path wakes them while it is not 0, and pays one atomic load
	// when it is.
	remote atomic.Int32
	mu     sync.Mutex
	m      map[string]*flight
}

// flight is a load by this process (local), or the wait of this process's
// callers on a network client's lease. done is closed when it ends; a local
// flight's result is set before.
type flight struct {
	done  chan struct{}
	local bool
	// waiters counts the callers waiting on it (under leaseTable.mu); a
	// remote flight nobody waits on any more is dropped.
	waiters int
	// The result of a local flight: value is the waiters' own copy.
	value []byte
	it    Item
	err   error
	// retry: the loader failed because its caller's context ended; the
	// waiters load again rather than take that caller's error.
	retry bool
}

// changed wakes the callers waiting on a network client's lease on key, if
// any: key was stored or deleted. The caller holds key's shard lock.
func (t *leaseTable) changed(key []byte) {
	if t.remote.Load() == 0 {
		return
	}
	t.mu.Lock()
	if f := t.m[string(key)]; f != nil && !f.local {
		t.dropRemoteLocked(key, f)
	}
	t.mu.Unlock()
}

// changedAll wakes every wait on a remote lease (flush_all).
func (t *leaseTable) changedAll() {
	if t.remote.Load() == 0 {
		return
	}
	t.mu.Lock()
	for k, f := range t.m {
		if !f.local {
			t.dropRemoteLocked([]byte(k), f)
		}
	}
	t.mu.Unlock()
}

func (t *leaseTable) dropRemoteLocked(key []byte, f *flight) {
	delete(t.m, string(key))
	t.remote.Add(-1)
	close(f.done)
}

// leaveRemote ends one caller's wait on the remote flight f without a
// wake-up (its timer or context); the last one drops the flight.
func (t *leaseTable) leaveRemote(key []byte, f *flight) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f.waiters--; f.waiters == 0 && t.m[string(key)] == f {
		t.dropRemoteLocked(key, f)
	}
}

// finish ends the local flight f with its result and wakes its waiters.
func (t *leaseTable) finish(key []byte, f *flight, it Item, err error, retry bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[string(key)] == f {
		delete(t.m, string(key))
	}
	if f.waiters > 0 && err == nil {
		f.value = bytes.Clone(it.Value)
	}
	f.it, f.err, f.retry = it, err, retry
	close(f.done)
}

// isLease reports whether the record at off is a lease item: empty, with
// the win token (what mg N leaves, and GetOrLoad). An empty value won for
// recache (R) looks the same, and is waited on the same way.
func (s *shard) isLease(off uint64) bool {
	if s.bits(off)&bitWon == 0 {
		return false
	}
	vl, _ := s.valLen(off)
	return vl == 0
}

// leaseGet reads key for GetOrLoad, all under the shard's lock: a value is
// appended to dst and returned; a lease item makes the caller wait, on this
// process's flight or on the network client's; a miss stores the lease item
// and makes the caller the loader. It counts a get, a hit only for a value.
func (c *Cache) leaseGet(dst, key []byte) ([]byte, Item, lease, error) {
	s, h, now, res := c.acquire(key)
	if res != resultOK {
		return dst, Item{}, lease{}, res.err()
	}
	defer s.unlock()
	s.st.cmdGet++
	_, off, ok, wasExpired := s.lookupExpired(key, h, now)
	if wasExpired {
		s.st.getExpired++
	}
	if ok && !s.isLease(off) {
		s.st.getHits++
		value, flags, exp, cas := s.decode(off)
		if dst == nil {
			dst = make([]byte, 0, len(value))
		}
		n := len(dst)
		dst = append(dst, value...)
		it := Item{Value: dst[n:len(dst):len(dst)], Flags: flags, Expires: expiresAt(exp), CAS: c.casOut(cas)}
		l := lease{state: leaseHit}
		if c.refreshAhead != 0 && exp != 0 && exp-now < c.refreshAhead && s.bits(off)&bitWon == 0 {
			s.buf[off+offBits] |= bitWon
			l = lease{state: leaseRefresh, token: cas}
		}
		s.touchRead(off, now)
		return dst, it, l, nil
	}
	s.st.getMisses++
	t := &c.leases
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[string(key)]
	if f != nil && f.local {
		f.waiters++
		return dst, Item{}, lease{state: leaseJoined, f: f}, nil
	}
	if ok {
		if f == nil {
			f = &flight{done: make(chan struct{})}
			t.m[string(key)] = f
			t.remote.Add(1)
		}
		f.waiters++
		return dst, Item{}, lease{state: leaseRemote, f: f, until: s.expiry(off), now: now}, nil
	}
	if f != nil {
		// The network client's lease ended: its waiters read again.
		t.dropRemoteLocked(key, f)
	}
	var token uint64
	if off, ok = s.create(key, h, nil, expiry(c.loadLease, now), 0, !wireKey(key), now); ok {
		s.buf[off+offBits] |= bitWon
		token = s.cas(off)
	}
	f = &flight{done: make(chan struct{}), local: true}
	t.m[string(key)] = f
	return dst, Item{}, lease{state: leaseWon, token: token, f: f}, nil
}

// releaseLease gives up the lease with token on key: the lease item is
// removed (placeholder) or the refreshed item loses its win token, unless
// a store or delete replaced it meanwhile.
func (c *Cache) releaseLease(key []byte, token uint64, placeholder bool) {
	if token == 0 {
		return
	}
	s, h, now, res := c.acquire(key)
	if res != resultOK {
		return
	}
	defer s.unlock()
	slot, off, ok := s.lookup(key, h, now)
	if !ok || s.cas(off) != token || s.bits(off)&bitWon == 0 {
		return
	}
	if placeholder {
		s.unlink(slot)
	} else {
		s.buf[off+offBits] &^= bitWon
	}
	// Callers waiting on the win wake now rather than at the item's expiry.
	c.leases.changed(key)
}

// resume carries on a GetOrLoad that did not hit (it, and dst, hold the
// value of a leaseRefresh): it loads, or waits and reads again, until it
// has a value or an error.
func (c *Cache) resume(ctx context.Context, dst, key []byte, it Item, l lease, load Loader) ([]byte, Item, error) {
	for {
		switch l.state {
		case leaseHit:
			return dst, it, nil
		case leaseRefresh:
			go c.refresh(context.WithoutCancel(ctx), bytes.Clone(key), l.token, load)
			return dst, it, nil
		case leaseWon:
			return c.load(ctx, dst, key, l, load)
		case leaseJoined:
			select {
			case <-l.f.done:
			case <-ctx.Done():
				return dst, Item{}, ctx.Err()
			}
			if f := l.f; !f.retry {
				if f.err != nil {
					return dst, Item{}, f.err
				}
				n := len(dst)
				dst = append(dst, f.value...)
				it = f.it
				it.Value = dst[n:len(dst):len(dst)]
				return dst, it, nil
			}
		case leaseRemote:
			if err := c.waitRemote(ctx, key, l); err != nil {
				return dst, Item{}, err
			}
		}
		var err error
		if dst, it, l, err = c.leaseGet(dst, key); err != nil {
			return dst, Item{}, err
		}
	}
}

// waitRemote waits until the network client's lease l on key ends: its
// store or delete, the lease item's expiry, or ctx.
func (c *Cache) waitRemote(ctx context.Context, key []byte, l lease) error {
	// The lease's end is on the cache's clock; this waits for it on the
	// system's, then reads again, and waits more if the item still lives.
	// A lease without an expiry (mg N0) ends only with a store or delete.
	var end <-chan time.Time
	if l.until != 0 {
		t := time.NewTimer(time.Duration(l.until-l.now) * time.Second)
		defer t.Stop()
		end = t.C
	}
	select {
	case <-l.f.done:
		return nil
	case <-end:
	case <-ctx.Done():
	}
	c.leases.leaveRemote(key, l.f)
	return ctx.Err()
}

// load runs the loader of the flight l won and stores its value under the
// lease. A panicking loader releases the key and panics again.
func (c *Cache) load(ctx context.Context, dst, key []byte, l lease, load Loader) (_ []byte, it Item, err error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		p := recover()
		c.releaseLease(key, l.token, true)
		perr := error(errLoaderExited)
		if p != nil {
			perr = &PanicError{Value: p, Stack: debug.Stack()}
		}
		c.leases.finish(key, l.f, Item{}, perr, false)
		if p != nil {
			panic(p)
		}
	}()
	value, ttl, err := load(ctx, key)
	returned = true
	if err != nil {
		c.releaseLease(key, l.token, true)
		c.leases.finish(key, l.f, Item{}, err, ctx.Err() != nil)
		return dst, Item{}, err
	}
	exptime := c.exptime(ttl)
	r := storeReq{kind: storeSet, key: key, value: value, exptime: exptime, lease: l.token, dropOnFail: true, binaryKey: !wireKey(key)}
	if l.token == 0 {
		// No lease item could be stored (NoEvict): a store meanwhile
		// still wins.
		r.kind, r.dropOnFail = storeAdd, false
	}
	res, cas, _ := c.store(&r)
	if res != resultOK {
		// Not stored: the key changed during the load, or the value does
		// not fit. The lease, if still there, goes with it.
		c.releaseLease(key, l.token, true)
	}
	n := len(dst)
	dst = append(dst, value...)
	it = Item{Value: dst[n:len(dst):len(dst)], Expires: expiresAt(expiry(exptime, c.clock())), CAS: cas}
	c.leases.finish(key, l.f, it, nil, false)
	return dst, it, nil
}

// refresh reloads the item whose win token a reader took (refresh-ahead)
// and stores the new value, unless the item changed meanwhile. On failure
// the item keeps its value and loses the token, for a later reader to try
// again.
func (c *Cache) refresh(ctx context.Context, key []byte, token uint64, load Loader) {
	returned := false
	defer func() {
		if !returned {
			c.releaseLease(key, token, false)
		}
	}()
	value, ttl, err := load(ctx, key)
	returned = true
	if err != nil {
		c.releaseLease(key, token, false)
		return
	}
	r := storeReq{kind: storeSet, key: key, value: value, exptime: c.exptime(ttl), lease: token, binaryKey: !wireKey(key)}
	if res, _, _ := c.store(&r); res != resultOK {
		c.releaseLease(key, token, false)
	}
}
