//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// serveLock takes the serving lock of the database at path: an exclusive
// flock on path+".serve.lock", released by the returned func or when the
// process ends (a crash leaves nothing to clean up).
func serveLock(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path+".serve.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: serving lock of %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("sqlite: %s: %w", path, ErrServing)
		}
		return nil, fmt.Errorf("sqlite: serving lock of %s: %w", path, err)
	}
	return f.Close, nil // closing the file releases the lock
}
