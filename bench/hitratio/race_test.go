//go:build race

package hitratio

// raceEnabled shrinks the quick run: the race detector slows the replay
// about tenfold.
const raceEnabled = true
