package hitratio

import "github.com/emcache/emcache/bench/caches"

// LRU is the reference the caches are measured against: an exact
// least-recently-used cache (a map and a doubly linked list) that charges
// each entry its key and value bytes only, so the budget holds the payload
// capacity. It exists only here, to tell how far a trace favours recency.
var LRU = caches.Lib{Name: "lru", New: func(budget int64) (caches.Cache, error) { return newLRU(budget), nil }}

// lruNode is one entry, linked by index into lruCache.nodes; node 0 is the
// list's sentinel (next is the most recent entry, prev the least).
type lruNode struct {
	key        string
	value      []byte
	prev, next int32
}

type lruCache struct {
	budget, used int64
	index        map[string]int32
	nodes        []lruNode
	free         []int32
}

func newLRU(budget int64) *lruCache {
	return &lruCache{budget: budget, index: map[string]int32{}, nodes: make([]lruNode, 1)}
}

func (c *lruCache) unlink(i int32) {
	n := &c.nodes[i]
	c.nodes[n.prev].next = n.next
	c.nodes[n.next].prev = n.prev
}

func (c *lruCache) pushFront(i int32) {
	n := &c.nodes[i]
	n.prev, n.next = 0, c.nodes[0].next
	c.nodes[n.next].prev = i
	c.nodes[0].next = i
}

func (c *lruCache) Get(dst []byte, k caches.Key) ([]byte, bool) {
	i, ok := c.index[string(k.B)]
	if !ok {
		return dst, false
	}
	c.unlink(i)
	c.pushFront(i)
	return append(dst, c.nodes[i].value...), true
}

func (c *lruCache) Set(k caches.Key, v []byte) {
	cost := int64(len(k.B) + len(v))
	if i, ok := c.index[string(k.B)]; ok {
		c.used += cost - int64(len(c.nodes[i].key)+len(c.nodes[i].value))
		c.nodes[i].value = append(c.nodes[i].value[:0], v...)
		c.unlink(i)
		c.pushFront(i)
	} else {
		var i int32
		if n := len(c.free); n > 0 {
			i, c.free = c.free[n-1], c.free[:n-1]
		} else {
			i = int32(len(c.nodes))
			c.nodes = append(c.nodes, lruNode{})
		}
		c.nodes[i].key = string(k.B)
		c.nodes[i].value = append(c.nodes[i].value[:0], v...)
		c.index[c.nodes[i].key] = i
		c.pushFront(i)
		c.used += cost
	}
	for c.used > c.budget && c.nodes[0].prev != 0 {
		c.evict(c.nodes[0].prev)
	}
}

func (c *lruCache) evict(i int32) {
	n := &c.nodes[i]
	c.unlink(i)
	delete(c.index, n.key)
	c.used -= int64(len(n.key) + len(n.value))
	n.key = ""
	c.free = append(c.free, i)
}

func (c *lruCache) Sync()  {}
func (c *lruCache) Close() { *c = lruCache{} }
