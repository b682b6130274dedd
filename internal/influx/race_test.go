//go:build race

package influx

// Allocation counts mean nothing under the race detector.
const raceEnabled = true
