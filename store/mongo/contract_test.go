package mongo

import (
	"testing"

	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/storetest"
)

// TestContract runs the shared store contract suite, each test on a fresh
// database; Reopen connects anew to the database of the closed store.
func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store { return mustOpen(t, Options{}) },
		Reopen: func(t *testing.T, closed store.Store) store.Store {
			return mustOpenDB(t, closed.(*Store).db.Name(), Options{})
		},
	})
}
