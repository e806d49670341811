//go:build race

package hostile

// raceEnabled: under the race detector, resident memory also holds the detector's shadow
// memory, which forcing a GC does not give back; RSS is then recorded but not asserted.
const raceEnabled = true
