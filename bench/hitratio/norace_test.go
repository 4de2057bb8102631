//go:build !race

package hitratio

const raceEnabled = false
