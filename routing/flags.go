package routing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// updateGuards check an update against the version it replaces, by type.
// A type listed here is updated only, never created by an update (its
// conformance row says UpdateOnly).
var updateGuards = map[string]func(current, next map[string]any) error{
	"Flag": reviewOnly,
}

// guardUpdate applies t's update guard, if it has one, to res as the
// next version of id: 404 when there is no current version.
func (s *server) guardUpdate(c *gin.Context, t, id string, res *fhir.Resource) error {
	guard := updateGuards[t]
	if guard == nil {
		return nil
	}
	cur, err := s.store.Read(c.Request.Context(), t, id)
	switch {
	case errors.Is(err, store.ErrNotFound), isGone(err):
		return fhir.Errorf(fhir.KindNotFound, "not-found", "%s/%s does not exist; an update does not create one", t, id)
	case err != nil:
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(cur.Body))
	dec.UseNumber()
	var current map[string]any
	if err := dec.Decode(&current); err != nil {
		return fmt.Errorf("routing: stored %s/%s: %w", t, id, err)
	}
	return guard(current, res.Doc)
}

// reviewOnly lets a supervisor close (or reopen) an abuse alert they
// reviewed: the Flag's status and period.end may change, nothing else, so
// that what detection found and the AuditEvents it points at stay as
// they were. The reviewer is on record in the update's AuditEvent, and
// each version in the Flag's history.
func reviewOnly(current, next map[string]any) error {
	if !reflect.DeepEqual(reviewed(current), reviewed(next)) {
		return fhir.Errorf(fhir.KindUnprocessable, "business-rule",
			"a Flag may change only in its status and period.end: what detection found and its evidence stay as they were").At("Flag")
	}
	return nil
}

// reviewed is a Flag without what a review may change: meta, status and
// period.end.
func reviewed(flag map[string]any) map[string]any {
	out := make(map[string]any, len(flag))
	for k, v := range flag {
		switch k {
		case "meta", "status":
		case "period":
			p, _ := v.(map[string]any)
			kept := map[string]any{}
			for pk, pv := range p {
				if pk != "end" {
					kept[pk] = pv
				}
			}
			out[k] = kept
		default:
			out[k] = v
		}
	}
	return out
}
