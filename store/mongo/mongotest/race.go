//go:build race

package mongotest

// raceEnabled: FerretDB then runs as a process of its own (see Start).
const raceEnabled = true
