package sqlite

import "database/sql"

// ExecFile runs statements on a closed database file.
func ExecFile(path string, stmts ...string) error {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, st := range stmts {
		if _, err := db.Exec(st); err != nil {
			return err
		}
	}
	return nil
}

// SetPlans changes how searches run: driveLimit 0 never lets a clause
// drive; sortKeys false never walks the sort keys.
func SetPlans(s *Store, driveLimit int, sortKeys bool) {
	s.driveLimit, s.noSortKeys = driveLimit, !sortKeys
}
