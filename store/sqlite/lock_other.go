//go:build !unix

package sqlite

// serveLock does not lock where flock is missing: one serving Store per
// database file is then the operator's to ensure.
func serveLock(string) (func() error, error) { return func() error { return nil }, nil }
