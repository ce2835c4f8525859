//go:build race

package mongo

// raceEnabled: FerretDB then runs as a process of its own (see TestMain).
const raceEnabled = true
