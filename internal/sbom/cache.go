package sbom

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// maxCacheEntries bounds the cache file: past it, only the entries the
// last bake used are kept.
const maxCacheEntries = 200_000

// Cache remembers the digests of file contents by the content hash the
// bake key already computed for them (BLAKE3; see bake/oci.HashInputs),
// so that a bake whose inputs did not change does not compute SHA-1 and
// SHA-256 again. It lives in one JSON file; it is a cache, never the
// truth: a missing or damaged file is an empty cache, and two bakes that
// save at once lose at most each other's new entries. A Cache is safe for
// concurrent use; a nil *Cache caches nothing.
type Cache struct {
	path string
	mu   sync.Mutex
	old  map[string]FileDigest
	used map[string]FileDigest
	miss bool
}

// OpenCache reads the cache file at path (which need not exist).
func OpenCache(path string) *Cache {
	c := &Cache{path: path, old: map[string]FileDigest{}, used: map[string]FileDigest{}}
	if raw, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(raw, &c.old) // damaged: start over
	}
	return c
}

// Empty reports whether the cache holds nothing that a bake could take:
// then a bake gains nothing by knowing its files' content hashes before
// it reads them.
func (c *Cache) Empty() bool {
	if c == nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.old) == 0 && len(c.used) == 0
}

// Get returns the digests cached under key.
func (c *Cache) Get(key string) (FileDigest, bool) {
	if c == nil || !isCacheKey(key) {
		return FileDigest{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.used[key]; ok {
		return d, true
	}
	d, ok := c.old[key]
	if ok {
		c.used[key] = d
	}
	return d, ok
}

// Put caches d under key.
func (c *Cache) Put(key string, d FileDigest) {
	if c == nil || !isCacheKey(key) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used[key] = d
	c.miss = true
}

// Save writes the cache file when something was added, atomically.
func (c *Cache) Save() error {
	if c == nil || c.path == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.miss {
		return nil
	}
	all := c.used
	if len(c.old)+len(c.used) <= maxCacheEntries {
		all = make(map[string]FileDigest, len(c.old)+len(c.used))
		for k, v := range c.old {
			all[k] = v
		}
		for k, v := range c.used {
			all[k] = v
		}
	}
	raw, err := json.Marshal(all)
	if err != nil {
		return fmt.Errorf("saving the SBOM digest cache: %w", err)
	}
	dir := filepath.Dir(c.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("saving the SBOM digest cache: %w", err)
	}
	f, err := os.CreateTemp(dir, ".file-digests-*")
	if err != nil {
		return fmt.Errorf("saving the SBOM digest cache: %w", err)
	}
	_, werr := f.Write(raw)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("saving the SBOM digest cache: %w", err)
	}
	if err := os.Rename(f.Name(), c.path); err != nil {
		os.Remove(f.Name())
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("saving the SBOM digest cache: %w", err)
	}
	c.old, c.used, c.miss = all, map[string]FileDigest{}, false
	return nil
}
