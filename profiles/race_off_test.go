//go:build !race

package profiles

// raceDetector reports whether the tests run with -race (which slows the
// codec tenfold).
const raceDetector = false
