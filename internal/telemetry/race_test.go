//go:build race

package telemetry

// The race detector makes sync.Pool drop items at random, and json.Valid
// pools its scanners, so allocation counts mean nothing under it.
const raceEnabled = true
