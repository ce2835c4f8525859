package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// The source registry is shown as FHIR resources (DESIGN.md sections 2
// and 8): per source one Organization and one Endpoint, both with the id
// registryID(URA), kept in the store in step with the configuration so
// that read, vread, history and search work as for every other type.

// loincOf names a data category's LOINC code (DESIGN.md section 9).
var loincOf = map[string]struct{ code, display string }{
	federation.CategoryMedication: {"10160-0", "History of Medication use Narrative"},
	federation.CategoryGPSummary:  {"60591-5", "Patient summary Document"},
}

func registryID(ura string) string { return "ura-" + ura }

// sourcesOf turns the configured sources into the federation's registry.
func sourcesOf(cs []SourceConfig) []federation.Source {
	out := make([]federation.Source, 0, len(cs))
	for _, s := range cs {
		out = append(out, federation.Source{URA: s.URA, Name: s.Name, BaseURL: strings.TrimSuffix(s.BaseURL, "/"), Categories: s.Categories})
	}
	return out
}

// registryResources renders sources as Organization and Endpoint
// resources, in that order per source.
func registryResources(sources []federation.Source) ([]store.Write, error) {
	type coding struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	type identifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	type reference struct {
		Reference  string      `json:"reference"`
		Identifier *identifier `json:"identifier,omitempty"`
		Display    string      `json:"display,omitempty"`
	}
	type concept struct {
		Coding []coding `json:"coding"`
		Text   string   `json:"text"`
	}
	type organization struct {
		ResourceType string       `json:"resourceType"`
		ID           string       `json:"id"`
		Identifier   []identifier `json:"identifier"`
		Active       bool         `json:"active"`
		Name         string       `json:"name,omitempty"`
		Endpoint     []reference  `json:"endpoint"`
	}
	type endpoint struct {
		ResourceType         string    `json:"resourceType"`
		ID                   string    `json:"id"`
		Status               string    `json:"status"`
		ConnectionType       coding    `json:"connectionType"`
		Name                 string    `json:"name,omitempty"`
		ManagingOrganization reference `json:"managingOrganization"`
		PayloadType          []concept `json:"payloadType"`
		PayloadMimeType      []string  `json:"payloadMimeType"`
		Address              string    `json:"address"`
	}
	var out []store.Write
	for _, s := range sources {
		id := registryID(s.URA)
		ura := &identifier{System: fhir.SystemURA, Value: s.URA}
		org := organization{
			ResourceType: "Organization", ID: id, Identifier: []identifier{*ura}, Active: true, Name: s.Name,
			Endpoint: []reference{{Reference: "Endpoint/" + id}},
		}
		ep := endpoint{
			ResourceType: "Endpoint", ID: id, Status: "active",
			ConnectionType:       coding{System: "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", Code: "hl7-fhir-rest"},
			ManagingOrganization: reference{Reference: "Organization/" + id, Identifier: ura, Display: s.Name},
			PayloadMimeType:      []string{"application/fhir+json"},
			Address:              s.BaseURL,
		}
		if s.Name != "" {
			ep.Name = s.Name + " (FHIR R4)"
		}
		for _, cat := range s.Categories {
			l, ok := loincOf[cat]
			if !ok {
				return nil, fmt.Errorf("registry: source %s: unknown category %q", s.URA, cat)
			}
			ep.PayloadType = append(ep.PayloadType, concept{Coding: []coding{{System: "http://loinc.org", Code: l.code, Display: l.display}}, Text: cat})
		}
		for _, r := range []any{org, ep} {
			body, err := json.Marshal(r)
			if err != nil {
				return nil, err
			}
			var doc map[string]any
			if err := json.Unmarshal(body, &doc); err != nil {
				return nil, err
			}
			typ := doc["resourceType"].(string)
			out = append(out, store.Write{Type: typ, ID: id, Body: body, Terms: fhir.ExtractTerms(typ, doc)})
		}
	}
	return out, nil
}

// bodyChecker validates a resource as the edge does (base spec and our
// profile for its type).
type bodyChecker interface {
	Check(ctx context.Context, body []byte, profileURL string) (*fhir.Resource, error)
	ProfileFor(resourceType string) string
}

// registryStore is what syncing the registry needs of the store.
type registryStore interface {
	Read(ctx context.Context, typ, id string) (store.Resource, error)
	Update(ctx context.Context, w store.Write, ifMatch int64) (store.Resource, error)
	Delete(ctx context.Context, typ, id string, ifMatch int64) (store.Resource, error)
	Search(ctx context.Context, q store.Query) (store.Page, error)
}

// registrySync counts what syncRegistry did.
type registrySync struct{ Written, Deleted, Unchanged int }

// syncRegistry makes the Organization and Endpoint resources in st those
// of sources: new and changed ones are written (a new version), the
// resources of sources no longer configured are deleted, unchanged ones
// are left alone (no new version).
func syncRegistry(ctx context.Context, st registryStore, v bodyChecker, sources []federation.Source) (registrySync, error) {
	var res registrySync
	writes, err := registryResources(sources)
	if err != nil {
		return res, err
	}
	want := map[string]bool{}
	for _, w := range writes {
		want[w.Type+"/"+w.ID] = true
		if _, err := v.Check(ctx, w.Body, v.ProfileFor(w.Type)); err != nil {
			return res, fmt.Errorf("registry: %s/%s is not valid: %w", w.Type, w.ID, err)
		}
		cur, err := st.Read(ctx, w.Type, w.ID)
		switch {
		case err == nil && sameContent(cur.Body, w.Body):
			res.Unchanged++
			continue
		case err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrGone):
			return res, fmt.Errorf("registry: read %s/%s: %w", w.Type, w.ID, err)
		}
		if _, err := st.Update(ctx, w, 0); err != nil {
			return res, fmt.Errorf("registry: write %s/%s: %w", w.Type, w.ID, err)
		}
		res.Written++
	}
	for _, typ := range []string{"Organization", "Endpoint"} {
		stored, err := allOf(ctx, st, typ)
		if err != nil {
			return res, err
		}
		for _, r := range stored {
			if want[typ+"/"+r.ID] {
				continue
			}
			if _, err := st.Delete(ctx, typ, r.ID, 0); err != nil {
				return res, fmt.Errorf("registry: delete %s/%s: %w", typ, r.ID, err)
			}
			res.Deleted++
		}
	}
	return res, nil
}

// allOf lists every current resource of typ.
func allOf(ctx context.Context, st registryStore, typ string) ([]store.Resource, error) {
	q := store.Query{Type: typ, Limit: 100}
	var all []store.Resource
	for {
		page, err := st.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("registry: list %s: %w", typ, err)
		}
		all = append(all, page.Resources...)
		if page.Next == nil {
			return all, nil
		}
		q.After = page.Next
	}
}

// sameContent reports whether two resource bodies are equal apart from
// meta (which the store stamps).
func sameContent(stored, fresh []byte) bool {
	decode := func(b []byte) (map[string]any, bool) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var m map[string]any
		if dec.Decode(&m) != nil {
			return nil, false
		}
		delete(m, "meta")
		return m, true
	}
	a, ok1 := decode(stored)
	b, ok2 := decode(fresh)
	return ok1 && ok2 && reflect.DeepEqual(a, b)
}

// syncRegistry brings the registry's resources in step with the sources
// the engine now uses, and logs what changed.
func (a *app) syncRegistry(ctx context.Context, sources []federation.Source) error {
	res, err := syncRegistry(ctx, a.store, a.validator, sources)
	if err != nil {
		return err
	}
	a.log.Info("source registry in the store",
		slog.Int("sources", len(sources)), slog.Int("written", res.Written),
		slog.Int("deleted", res.Deleted), slog.Int("unchanged", res.Unchanged))
	return nil
}

// reload re-reads the configuration and takes over its sources (only
// those: other settings need a restart). A configuration that fails to
// load or validate changes nothing. serve calls it on SIGHUP.
func (a *app) reload(ctx context.Context) error {
	a.reloading.Lock()
	defer a.reloading.Unlock()
	next, err := a.cfg.reread()
	if err != nil {
		a.log.Error("configuration reload refused: the source registry stays as it was", slog.String("error", err.Error()))
		return err
	}
	if !reflect.DeepEqual(restartSettings(&a.started), restartSettings(next)) {
		a.log.Warn("configuration reload: only sources are taken over now; the other changed settings take effect after a restart")
	}
	sources := append(sourcesOf(next.Sources), a.demoSources()...)
	// The resources first: the engine takes the new sources only once
	// they are shown; a failed sync leaves the engine as it was, and the
	// next SIGHUP syncs again.
	if err := a.syncRegistry(ctx, sources); err != nil {
		a.log.Error("configuration reload refused: the registry's Organization and Endpoint resources could not be written; the engine keeps the old sources", slog.String("error", err.Error()))
		return err
	}
	a.engine.SetRegistry(sources)
	a.cfg.Sources = next.Sources
	a.log.Info("configuration reloaded: source registry replaced", slog.Int("sources", len(sources)))
	return nil
}

// restartSettings is a configuration without what a reload takes over
// (sources) and without how it was loaded: what a reload compares to
// tell that other settings changed.
func restartSettings(c *Config) Config {
	x := *c
	x.Sources, x.args, x.getenv = nil, nil, nil
	return x
}
