//go:build race

package signing

// raceEnabled: the race detector makes sync.Pool drop items on purpose, so pooled state is
// reallocated now and then.
const raceEnabled = true
