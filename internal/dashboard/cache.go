package dashboard

import (
	"sync"
	"time"
)

// DefaultCacheTTL is how long a document read from the catalog is served
// again before it is read anew.
const DefaultCacheTTL = 5 * time.Second

// cache keeps documents read from the catalog for a short while, so a
// page and its reload (or several pages) within ttl cost one read. Errors
// are not kept. Loads run one at a time: the catalog is read by one
// request, and the others waiting for the same document get its result.
type cache struct {
	mu    sync.Mutex
	now   func() time.Time
	ttl   time.Duration
	items map[string]cached
}

type cached struct {
	at  time.Time
	val any
}

// get returns the document key, read with load when it is missing or
// older than the ttl.
func (c *cache) get(key string, load func() (any, error)) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if it, ok := c.items[key]; ok && now.Sub(it.at) < c.ttl && !now.Before(it.at) {
		return it.val, nil
	}
	v, err := load()
	if err != nil {
		return nil, err
	}
	if c.items == nil {
		c.items = map[string]cached{}
	}
	c.items[key] = cached{at: now, val: v}
	return v, nil
}

// getAs is cache.get for a document of type T.
func getAs[T any](c *cache, key string, load func() (T, error)) (T, error) {
	v, err := c.get(key, func() (any, error) { return load() })
	if err != nil {
		var zero T
		return zero, err
	}
	return v.(T), nil
}
