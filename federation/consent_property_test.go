package federation_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/mongo"
	"github.com/schakelpunt/schakelpunt/store/mongo/mongotest"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// The property of issue 6, end to end through a store: no random set of
// consents, written to the store (with updates and deletions) and read
// back by the engine's real consent path, ever lets data of a category,
// from a source, to a recipient flow that the patient did not permit. The
// engine's answer is compared with a model of the patient's instructions
// written here from DESIGN.md sections 3 and 9, independently of
// access.DecideConsent. The comparison is both ways: the engine never
// permits what the model does not (the property), and it does not deny
// what the model permits (else a store that lost every consent would
// pass).

// The small universe the generator draws from, so that organisations,
// dates, codes and actors collide often.
var (
	propSources    = []string{uraGP, uraBrug, uraKruis}
	propRecipients = []string{"90000050", "90000060"}
	propCategories = []string{fhir.CategoryMedication, fhir.CategoryGPSummary}
	// propCodes: a permit of the SNOMED code permits no category we know;
	// a deny of it excludes every category (it cannot be read).
	propCodes = []modelCode{{fhir.SystemLOINC, fhir.CategoryMedication}, {fhir.SystemLOINC, fhir.CategoryGPSummary}, {"http://snomed.info/sct", "371530004"}}
	// propStatuses, active weighted up.
	propStatuses = []string{"active", "active", "active", "active", "inactive", "rejected", "draft", "proposed", "entered-in-error"}
	// propDateTimes: three instants, each in two spellings (zones), so
	// that ties between spellings are ties.
	propDateTimes = []modelTime{
		{"2026-11-01T10:00:00+01:00", at("2026-11-01T09:00:00Z")}, {"2026-11-01T09:00:00Z", at("2026-11-01T09:00:00Z")},
		{"2026-11-20T12:00:00Z", at("2026-11-20T12:00:00Z")}, {"2026-11-20T07:00:00-05:00", at("2026-11-20T12:00:00Z")},
		{"2026-12-01T08:00:00Z", at("2026-12-01T08:00:00Z")}, {"2026-12-01T09:00:00+01:00", at("2026-12-01T08:00:00Z")},
	}
	// propStarts and propEnds: a period bound as written, and the first
	// instant it covers (start) or the first it no longer covers (end:
	// an end includes the whole day or second it names).
	propStarts = []modelBound{
		{"2026-11-22", at("2026-11-22T00:00:00Z")},
		{"2026-12-01T10:00:00+01:00", at("2026-12-01T09:00:00Z")},
		{"2027-01-15T11:00:00Z", at("2027-01-15T11:00:00Z")},
	}
	propEnds = []modelBound{
		{"2026-11-30", at("2026-12-01T00:00:00Z")},
		{"2027-01-15T10:59:59Z", at("2027-01-15T11:00:00Z")},
		{"2027-01-15T11:00:00Z", at("2027-01-15T11:00:01Z")},
		{"2028", at("2029-01-01T00:00:00Z")},
	}
	// propTimes are the moments of the queries.
	propTimes = []time.Time{at("2026-11-25T12:00:00Z"), at("2027-01-15T11:00:00Z"), at("2027-06-01T00:00:00Z")}
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

type (
	modelCode struct{ system, code string }
	modelTime struct {
		text string
		at   time.Time
	}
	modelBound struct {
		text string
		at   time.Time
	}
	modelProvision struct {
		deny       bool
		start, end *modelBound
		codes      []modelCode
		custodians []string
		recipients []string
		nested     []modelProvision
	}
	modelConsent struct {
		id        string
		status    string
		dateTime  modelTime
		orgs      []string
		provision modelProvision
		deleted   bool // written, then deleted
		replaced  bool // written first as a broad permit, then updated to this
	}
)

// covers reports whether p's own period covers t.
func (p *modelProvision) covers(t time.Time) bool {
	return (p.start == nil || !t.Before(p.start.at)) && (p.end == nil || t.Before(p.end.at))
}

// emptyPeriod: a period that covers no instant cannot be read.
func (p *modelProvision) emptyPeriod() bool {
	if p.start != nil && p.end != nil && !p.start.at.Before(p.end.at) {
		return true
	}
	return slices.ContainsFunc(p.nested, func(n modelProvision) bool { return n.emptyPeriod() })
}

func pick[T any](r *rand.Rand, from []T) T { return from[r.IntN(len(from))] }

// some returns a random subset of from, empty one time in odds.
func some[T any](r *rand.Rand, from []T, odds int) []T {
	if r.IntN(odds) == 0 {
		return nil
	}
	var out []T
	for _, v := range from {
		if r.IntN(2) == 0 {
			out = append(out, v)
		}
	}
	return out
}

func genModelProvision(r *rand.Rand, depth int) modelProvision {
	p := modelProvision{deny: depth > 1 && r.IntN(4) != 0 || depth == 1 && r.IntN(5) == 0}
	if r.IntN(3) == 0 {
		b := pick(r, propStarts)
		p.start = &b
	}
	if r.IntN(3) == 0 {
		b := pick(r, propEnds)
		p.end = &b
	}
	p.codes = some(r, propCodes, 2)
	p.custodians = some(r, propSources, 2)
	p.recipients = some(r, propRecipients, 2)
	if depth < 3 && r.IntN(2) == 0 {
		for range 1 + r.IntN(2) {
			p.nested = append(p.nested, genModelProvision(r, depth+1))
		}
	}
	return p
}

func genModelConsents(r *rand.Rand, prefix string) []modelConsent {
	n := r.IntN(6)
	cs := make([]modelConsent, 0, n)
	for i := range n {
		c := modelConsent{
			id:        fmt.Sprintf("%s-%d", prefix, i),
			status:    pick(r, propStatuses),
			dateTime:  pick(r, propDateTimes),
			orgs:      []string{pick(r, propSources)},
			provision: genModelProvision(r, 1),
			deleted:   r.IntN(10) == 0,
			replaced:  r.IntN(4) == 0,
		}
		if o := pick(r, propSources); r.IntN(5) == 0 && o != c.orgs[0] {
			c.orgs = append(c.orgs, o)
		}
		cs = append(cs, c)
	}
	return cs
}

// The model: what the patient instructed.

// decides: a consent with one of these statuses is the patient's decision
// at its organisations and replaces their earlier ones; draft, proposed
// and entered-in-error are no decision at all.
func decides(c *modelConsent) bool {
	return c.status == "active" || c.status == "inactive" || c.status == "rejected"
}

// grants: an active consent whose top provision is a permit.
func grants(c *modelConsent) bool { return c.status == "active" && !c.provision.deny }

// standing reports, for organisation o, whether c is among o's latest
// decisions (true when o has no later decision), and whether it stands
// alone with them: no other latest decision of o withdraws or denies.
func standing(cs []modelConsent, c *modelConsent, o string) (latest, unopposed bool) {
	latest, unopposed = true, true
	for i := range cs {
		d := &cs[i]
		if d == c || d.deleted || !decides(d) || !slices.Contains(d.orgs, o) {
			continue
		}
		if d.dateTime.at.After(c.dateTime.at) {
			return false, false
		}
		if d.dateTime.at.Equal(c.dateTime.at) && !grants(d) {
			unopposed = false
		}
	}
	return latest, unopposed
}

// names reports whether a list of URAs names u (an empty list names all).
func names(list []string, u string) bool { return len(list) == 0 || slices.Contains(list, u) }

// modelPermits is the model's answer: may data of category flow from
// source to recipient at t?
//
//   - A consent that cannot be read (an empty period) hides what the
//     patient wanted: nothing flows.
//   - Only a consent that is active and is its organisations' latest
//     decision speaks for the patient; a later decision at the same
//     organisation, of any kind, replaces it. For it to permit, it must be
//     the latest at every organisation it names, and not tied with a
//     withdrawal or a deny there.
//   - It permits when its top provision is a permit whose period covers t
//     and whose codes, custodians and recipients (each: none means all)
//     include the category, the source and the recipient.
//   - Every deny provision, at any depth, of an active consent that is
//     the latest at any organisation it names excludes what it names
//     (codes: a code that is not LOINC names every category) during its
//     period inside the periods around it, whatever other consents permit.
func modelPermits(cs []modelConsent, category, source, recipient string, t time.Time) bool {
	for i := range cs {
		if !cs[i].deleted && cs[i].provision.emptyPeriod() {
			return false
		}
	}
	permitted := false
	for i := range cs {
		c := &cs[i]
		if c.deleted || c.status != "active" {
			continue
		}
		forAll, forAny := true, false
		for _, o := range c.orgs {
			latest, unopposed := standing(cs, c, o)
			forAll = forAll && latest && unopposed
			forAny = forAny || latest
		}
		if forAny && denies(&c.provision, category, source, recipient, t) {
			return false
		}
		p := &c.provision
		if forAll && !p.deny && p.covers(t) &&
			(len(p.codes) == 0 || slices.Contains(p.codes, modelCode{fhir.SystemLOINC, category})) &&
			names(p.custodians, source) && names(p.recipients, recipient) {
			permitted = true
		}
	}
	return permitted
}

// denies reports whether p, or a provision inside it, is a deny that
// covers t (within the periods around it) and names the request.
func denies(p *modelProvision, category, source, recipient string, t time.Time) bool {
	if !p.covers(t) {
		return false
	}
	if p.deny && names(p.custodians, source) && names(p.recipients, recipient) &&
		(len(p.codes) == 0 || slices.ContainsFunc(p.codes, func(c modelCode) bool {
			return c.system != fhir.SystemLOINC || c.code == category
		})) {
		return true
	}
	for i := range p.nested {
		if denies(&p.nested[i], category, source, recipient, t) {
			return true
		}
	}
	return false
}

// Rendering the model as FHIR Consents.

func uraRef(u string) map[string]any {
	return map[string]any{"identifier": map[string]any{"system": fhir.SystemURA, "value": u}}
}

func renderProvision(p *modelProvision) map[string]any {
	out := map[string]any{"type": "permit"}
	if p.deny {
		out["type"] = "deny"
	}
	if p.start != nil || p.end != nil {
		per := map[string]any{}
		if p.start != nil {
			per["start"] = p.start.text
		}
		if p.end != nil {
			per["end"] = p.end.text
		}
		out["period"] = per
	}
	var actors []any
	for _, u := range p.custodians {
		actors = append(actors, map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}}}, "reference": uraRef(u)})
	}
	for _, u := range p.recipients {
		actors = append(actors, map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}}}, "reference": uraRef(u)})
	}
	if actors != nil {
		out["actor"] = actors
	}
	var codes []any
	for _, c := range p.codes {
		codes = append(codes, map[string]any{"coding": []any{map[string]any{"system": c.system, "code": c.code}}})
	}
	if codes != nil {
		out["code"] = codes
	}
	var nested []any
	for i := range p.nested {
		nested = append(nested, renderProvision(&p.nested[i]))
	}
	if nested != nil {
		out["provision"] = nested
	}
	return out
}

func renderConsent(c *modelConsent, bsn string) []byte {
	var orgs []any
	for _, o := range c.orgs {
		orgs = append(orgs, uraRef(o))
	}
	b, err := json.Marshal(map[string]any{
		"resourceType": "Consent", "id": c.id, "status": c.status,
		"scope":        map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"category":     []any{map[string]any{"coding": []any{map[string]any{"system": fhir.SystemLOINC, "code": "59284-0"}}}},
		"patient":      map[string]any{"identifier": map[string]any{"system": fhir.SystemBSN, "value": bsn}},
		"dateTime":     c.dateTime.text,
		"organization": orgs,
		"provision":    renderProvision(&c.provision),
	})
	if err != nil {
		panic(err)
	}
	return b
}

// broadPermit is what a replaced or deleted consent said first: every
// category from every source to everyone, latest of its organisations.
// Were an old version or a deleted consent read, data would flow.
func broadPermit(c *modelConsent) *modelConsent {
	return &modelConsent{id: c.id, status: "active", dateTime: modelTime{"2026-12-31T00:00:00Z", at("2026-12-31T00:00:00Z")}, orgs: c.orgs}
}

// propStore is a store under test: the engine's index, written directly
// as the FHIR edge writes (terms from fhir.ExtractTerms).
type propStore interface {
	federation.Index
	Create(ctx context.Context, w store.Write) (store.Resource, error)
	Update(ctx context.Context, w store.Write, ifMatch int64) (store.Resource, error)
	Delete(ctx context.Context, typ, id string, ifMatch int64) (store.Resource, error)
	Close() error
}

// TestConsentPropertyThroughStores runs the property on the embedded
// store and on the Mongo adapter (FerretDB, or SCHAKELPUNT_TEST_MONGODB_URI).
// FerretDB scans whole collections, so the Mongo run starts a fresh
// database every few cases.
func TestConsentPropertyThroughStores(t *testing.T) {
	t.Parallel()
	sqliteCases, mongoCases := 400, 200
	if testing.Short() {
		sqliteCases, mongoCases = 60, 30
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		open := func(t *testing.T) propStore {
			st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), fmt.Sprintf("index-%d.db", time.Now().UnixNano())), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		checkConsentProperty(t, open, sqliteCases, 100, 1)
	})
	t.Run("mongo", func(t *testing.T) {
		t.Parallel()
		srv, err := mongotest.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		open := func(t *testing.T) propStore {
			st, err := mongo.Open(context.Background(), srv.URI, mongotest.DatabaseName(t.Name()), mongo.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		checkConsentProperty(t, open, mongoCases, 10, 2)
	})
}

// checkConsentProperty generates cases random consent sets, each for a
// patient of its own registered at every source, writes them to a store
// from open (a new one every batch cases) and compares every decision
// of the engine with the model's.
func checkConsentProperty(t *testing.T, open func(*testing.T) propStore, cases, batch int, seed uint64) {
	f, err := shared()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := propTimes[0]
	var registry []federation.Source
	for _, u := range propSources {
		registry = append(registry, federation.Source{URA: u, Name: "source " + u, BaseURL: "https://127.0.0.1:9/fhir/R4/" + u,
			Categories: []string{federation.CategoryMedication, federation.CategoryGPSummary}})
	}
	var (
		st  propStore
		eng *federation.Engine
	)
	closeBatch := func() {
		if eng != nil {
			eng.Close()
			if err := st.Close(); err != nil {
				t.Error(err)
			}
		}
	}
	defer closeBatch()
	newBatch := func() {
		closeBatch()
		st = open(t)
		eng, err = federation.New(federation.Config{
			Registry: registry, Index: st, Policy: access.DefaultPolicy(), Validator: f.validator,
			ClientCert: f.client, SourceCAs: []*x509.Certificate{f.ca.Cert},
			Now: func() time.Time { return now },
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	write := func(typ, id string, body []byte, update bool) {
		t.Helper()
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatal(err)
		}
		w := store.Write{Type: typ, ID: id, Body: body, Terms: fhir.ExtractTerms(typ, doc)}
		if update {
			_, err = st.Update(ctx, w, 0)
		} else {
			_, err = st.Create(ctx, w)
		}
		if err != nil {
			t.Fatalf("write %s/%s: %v", typ, id, err)
		}
	}

	r := rand.New(rand.NewPCG(seed, 6))
	bsns := benchBSNs(cases)
	checked, permits := 0, 0
	for n := range cases {
		if n%batch == 0 {
			newBatch()
		}
		bsn := bsns[n]
		for _, u := range propSources {
			write("Patient", fmt.Sprintf("idx-%d-%s", n, u), []byte(indexEntry(bsn, u, "https://127.0.0.1:9/fhir/R4/"+u+"/Patient/p"+bsn)), false)
		}
		cs := genModelConsents(r, fmt.Sprintf("c%d", n))
		for i := range cs {
			c := &cs[i]
			if c.replaced || c.deleted {
				write("Consent", c.id, renderConsent(broadPermit(c), bsn), false)
			}
			switch {
			case c.deleted:
				if _, err := st.Delete(ctx, "Consent", c.id, 0); err != nil {
					t.Fatal(err)
				}
			case c.replaced:
				write("Consent", c.id, renderConsent(c, bsn), true)
			default:
				write("Consent", c.id, renderConsent(c, bsn), false)
			}
		}
		for _, now = range propTimes {
			for _, recipient := range propRecipients {
				p := professional("01.015") // a GP: the role policy admits both categories
				p.URA = recipient
				for _, cat := range []string{federation.CategoryMedication, federation.CategoryGPSummary} {
					loinc := propCategories[0]
					if cat == federation.CategoryGPSummary {
						loinc = propCategories[1]
					}
					ts, res, err := eng.Permitted(ctx, p, bsn, cat)
					if err != nil && !errors.Is(err, access.ErrDenied) {
						t.Fatalf("case %d: %v", n, err)
					}
					asked := map[string]bool{}
					for _, tg := range ts {
						asked[tg.URA] = true
						if want := "p" + bsn; tg.PatientID != want {
							t.Errorf("case %d: %s asked about %q, want %q", n, tg.URA, tg.PatientID, want)
						}
					}
					for _, src := range propSources {
						want := modelPermits(cs, loinc, src, recipient, now)
						checked++
						if asked[src] {
							permits++
						}
						if asked[src] != want {
							t.Fatalf("case %d: %s from %s to %s at %s: engine permits %v, the patient's consents %v\nreasons: %s\nconsents:\n%s",
								n, loinc, src, recipient, now.Format(time.RFC3339), asked[src], want,
								strings.Join(res.Reasons, "\n  "), describe(cs, bsn))
						}
					}
				}
			}
		}
	}
	t.Logf("%d cases, %d decisions, %d permits", cases, checked, permits)
	if permits == 0 || permits == checked {
		t.Fatalf("%d permits of %d decisions: the generator does not exercise both answers", permits, checked)
	}
}

func describe(cs []modelConsent, bsn string) string {
	var b strings.Builder
	for i := range cs {
		fmt.Fprintf(&b, "  deleted=%v replaced=%v %s\n", cs[i].deleted, cs[i].replaced, renderConsent(&cs[i], bsn))
	}
	return b.String()
}
