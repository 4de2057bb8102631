package emcache

import (
	"context"
	"encoding/json"
	"sync"
	"time"
	"unsafe"
)

// Codec turns values of type V into bytes and back, for [Typed].
type Codec[V any] interface {
	// Append appends the encoding of v to dst and returns the extended
	// slice.
	Append(dst []byte, v V) ([]byte, error)
	// Decode returns the value data encodes. data is valid only during
	// the call: Decode must copy what it keeps.
	Decode(data []byte) (V, error)
}

// JSON returns a [Codec] that encodes values with encoding/json.
func JSON[V any]() Codec[V] { return jsonCodec[V]{} }

type jsonCodec[V any] struct{}

func (jsonCodec[V]) Append(dst []byte, v V) ([]byte, error) {
	b, err := json.Marshal(v)
	if len(dst) == 0 {
		return b, err
	}
	return append(dst, b...), err
}

func (jsonCodec[V]) Decode(data []byte) (V, error) {
	var v V
	err := json.Unmarshal(data, &v)
	return v, err
}

// Typed is a view of a [Cache] for the common case: string keys, values of
// type V through a [Codec], and a miss that is no error. Its items are the
// cache's, stored with client flags 0, so a network client reads the
// encoded bytes. It allocates nothing beyond what the codec does. It is
// safe for concurrent use.
type Typed[V any] struct {
	c     *Cache
	codec Codec[V]
	// bufs lends the buffers values are read into and encoded in.
	bufs sync.Pool
}

// NewTyped returns the typed view of c whose values codec encodes.
func NewTyped[V any](c *Cache, codec Codec[V]) *Typed[V] {
	return &Typed[V]{c: c, codec: codec}
}

// typedBuf is what Typed's pool lends: a pointer, so that lending it
// allocates nothing.
type typedBuf struct{ b []byte }

func (t *Typed[V]) buf() *typedBuf {
	if b, ok := t.bufs.Get().(*typedBuf); ok {
		return b
	}
	return &typedBuf{b: make([]byte, 0, 256)}
}

// maxPooledBuf keeps the pool from holding on to the buffers of rare huge
// values.
const maxPooledBuf = 64 << 10

func (t *Typed[V]) put(b *typedBuf) {
	if cap(b.b) <= maxPooledBuf {
		b.b = b.b[:0]
		t.bufs.Put(b)
	}
}

// keyBytes is key's bytes without a copy; the cache never writes to a key
// nor keeps it.
func keyBytes(key string) []byte { return unsafe.Slice(unsafe.StringData(key), len(key)) }

// Get returns the value under key and whether there is one; a miss is not
// an error. A value the codec cannot decode is an error.
func (t *Typed[V]) Get(key string) (V, bool, error) {
	var zero V
	b := t.buf()
	defer t.put(b)
	var err error
	b.b, _, err = t.c.GetAppend(b.b[:0], keyBytes(key))
	switch {
	case err == ErrNotFound:
		return zero, false, nil
	case err != nil:
		return zero, false, err
	}
	v, err := t.codec.Decode(b.b)
	if err != nil {
		return zero, false, err
	}
	return v, true, nil
}

// Set stores v under key, expiring after ttl (0: never).
func (t *Typed[V]) Set(key string, v V, ttl time.Duration) error {
	b := t.buf()
	defer t.put(b)
	var err error
	if b.b, err = t.codec.Append(b.b[:0], v); err != nil {
		return err
	}
	return t.c.Set(keyBytes(key), b.b, ttl)
}

// Delete removes the item under key; a key without one is not an error.
func (t *Typed[V]) Delete(key string) error {
	if err := t.c.Delete(keyBytes(key)); err != nil && err != ErrNotFound {
		return err
	}
	return nil
}

// GetOrLoad returns the value under key, loading it with load on a miss as
// [Cache.GetOrLoad] does: one load per key however many callers miss it at
// once, the lease shared with network clients, refresh-ahead if the cache
// has it.
func (t *Typed[V]) GetOrLoad(ctx context.Context, key string, load func(ctx context.Context, key string) (V, time.Duration, error)) (V, error) {
	var zero V
	b := t.buf()
	defer t.put(b)
	kb := keyBytes(key)
	dst, it, l, err := t.c.leaseGet(b.b[:0], kb)
	if err != nil {
		return zero, err
	}
	if l.state != leaseHit {
		// Off the hit path: only a miss or a refresh pays for the closure.
		loader := func(ctx context.Context, _ []byte) ([]byte, time.Duration, error) {
			v, ttl, err := load(ctx, key)
			if err != nil {
				return nil, 0, err
			}
			enc, err := t.codec.Append(nil, v)
			return enc, ttl, err
		}
		if dst, it, err = t.c.resume(ctx, dst, kb, it, l, loader); err != nil {
			b.b = dst
			return zero, err
		}
	}
	b.b = dst
	return t.codec.Decode(it.Value)
}

// Update changes the value under key atomically, as [Cache.Update] does:
// fn gets the current value (found false: none) and returns the new one,
// what to do with it and its TTL. The codec and fn run under the lock of
// the key's shard: both must be short and must not call the cache. A value
// the codec cannot decode, or a new one it cannot encode, aborts the update
// with the codec's error.
func (t *Typed[V]) Update(key string, fn func(old V, found bool) (V, time.Duration, UpdateOp)) error {
	b := t.buf()
	defer t.put(b)
	var codecErr error
	_, err := t.c.Update(keyBytes(key), func(old []byte, found bool) ([]byte, time.Duration, UpdateOp) {
		var v V
		if found {
			if v, codecErr = t.codec.Decode(old); codecErr != nil {
				return nil, 0, UpdateAbort
			}
		}
		nv, ttl, op := fn(v, found)
		if op != UpdateSet && op != UpdateKeepTTL {
			return nil, 0, op
		}
		if b.b, codecErr = t.codec.Append(b.b[:0], nv); codecErr != nil {
			return nil, 0, UpdateAbort
		}
		return b.b, ttl, op
	})
	if codecErr != nil {
		return codecErr
	}
	return err
}
