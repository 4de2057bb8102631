// Package bench is a separate module that compares emcache with other Go
// caches (otter, ristretto, freecache, fastcache, bigcache) and checks its
// server against a third-party memcached client, so that none of these enter
// emcache's own go.mod. See README.md for the method and the results;
// `go run ./cmd/report` regenerates them.
package bench
