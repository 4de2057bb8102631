//go:build race

package emcache

// raceEnabled tells tests that the race detector runs: its shadow memory
// multiplies the RSS a test touches, and it makes sync.Pool drop buffers at
// random, so memory and allocation checks skip under it.
const raceEnabled = true

// RaceEnabled is raceEnabled for the external test package.
const RaceEnabled = raceEnabled
