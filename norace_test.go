//go:build !race

package emcache

const raceEnabled = false

// RaceEnabled is raceEnabled for the external test package.
const RaceEnabled = raceEnabled
