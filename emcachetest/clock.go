package emcachetest

import (
	"sync/atomic"
	"time"
)

// Clock is a clock that moves only when a test moves it, for a cache's
// [emcache.Config].Now: expiry, touch and delayed flush_all then happen
// exactly when the test says, without sleeping. It is safe for concurrent
// use, as Config.Now must be: the cache reads it from every operation and
// from its background goroutine.
type Clock struct {
	ns atomic.Int64 // Unix nanoseconds
}

// NewClock returns a clock showing t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.SetTime(t)
	return c
}

// Now returns the clock's time; pass it as Config.Now.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// SetTime sets the clock to t, which may be in the past: the cache then sees
// existing items as younger, as memcached would after its clock stepped back.
func (c *Clock) SetTime(t time.Time) { c.ns.Store(t.UnixNano()) }

// FastForward moves the clock forward by d (back if d is negative).
// Expiry has memcached's one-second resolution: an item stored with a TTL
// of 60 is gone once the clock has moved 60 seconds.
func (c *Clock) FastForward(d time.Duration) { c.ns.Add(int64(d)) }
