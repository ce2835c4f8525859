package access_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// The property of issue 6: no set of consents ever permits a category, a
// source or a recipient that the patient did not permit. Random consent
// sets from a small universe (so that organisations, dates, codes and
// actors collide often) are decided and checked against the rules stated
// independently below.

// chooser is where a generator takes its choices from: a seeded random
// source, or the bytes of a fuzz input.
type chooser interface {
	intn(n int) int
}

type randChooser struct{ r *rand.Rand }

func (c randChooser) intn(n int) int { return c.r.IntN(n) }

// byteChooser takes choices from b; when b runs out every choice is 0.
type byteChooser struct{ b []byte }

func (c *byteChooser) intn(n int) int {
	if len(c.b) == 0 {
		return 0
	}
	v := int(c.b[0]) % n
	c.b = c.b[1:]
	return v
}

var (
	genOrgs       = []string{orgA, orgB, orgGP}
	genRecipients = []string{recR, recR2}
	genCodes      = []access.Coding{{System: fhir.SystemLOINC, Code: med}, {System: fhir.SystemLOINC, Code: gps}, {System: "http://snomed.info/sct", Code: "371530004"}}
	genStatuses   = append(access.ConsentStatuses(), access.ConsentActive, access.ConsentActive, access.ConsentActive)
	genPeriods    = []access.Period{
		{},
		{Start: day("2026-11-22")},
		{Start: day("2026-11-22"), End: day("2027-11-23")},
		{Start: day("2025-01-01"), End: day("2027-01-01")},
		{Start: day("2027-06-01")},
		{End: day("2027-01-15").Add(11 * time.Hour)},   // ends at the very moment of the query
		{Start: day("2027-01-15").Add(11 * time.Hour)}, // starts at the very moment of the query
	}
	genTimes = []time.Time{day("2026-11-01"), day("2026-11-15"), day("2026-12-01"), day("2026-12-01").Add(time.Hour)}
)

func subset[T any](c chooser, from []T, emptyOdds int) []T {
	if c.intn(emptyOdds) != 0 {
		return nil
	}
	var out []T
	for _, v := range from {
		if c.intn(2) == 0 {
			out = append(out, v)
		}
	}
	return out
}

func genProvision(c chooser, depth int, top bool) access.Provision {
	p := access.Provision{Type: access.ProvisionDeny}
	if (top && c.intn(5) != 0) || (!top && c.intn(4) == 0) {
		p.Type = access.ProvisionPermit
	}
	if c.intn(2) == 0 {
		p.Period = genPeriods[c.intn(len(genPeriods))]
	}
	p.Codes = subset(c, genCodes, 2)
	p.Custodians = subset(c, genOrgs, 2)
	p.Recipients = subset(c, genRecipients, 3)
	if depth < 3 {
		for range c.intn(3) {
			p.Provisions = append(p.Provisions, genProvision(c, depth+1, false))
		}
	}
	return p
}

func genConsents(c chooser, max int) []access.Consent {
	n := c.intn(max + 1)
	cs := make([]access.Consent, 0, n)
	for i := range n {
		cons := access.Consent{
			ID:            "c" + string(rune('a'+i%26)),
			Status:        genStatuses[c.intn(len(genStatuses))],
			DateTime:      genTimes[c.intn(len(genTimes))],
			Organizations: []string{genOrgs[c.intn(len(genOrgs))]},
			Provision:     genProvision(c, 1, true),
		}
		if c.intn(5) == 0 {
			if o := genOrgs[c.intn(len(genOrgs))]; o != cons.Organizations[0] {
				cons.Organizations = append(cons.Organizations, o)
			}
		}
		if c.intn(10) == 0 {
			cons.ID = fixtureBSN // an id that is a BSN must never reach a reason
		}
		cs = append(cs, cons)
	}
	return cs
}

func genRequest(c chooser) access.ConsentRequest {
	return request([]string{med, gps}[c.intn(2)], genOrgs[c.intn(len(genOrgs))], genRecipients[c.intn(len(genRecipients))])
}

// The reference rules, written for clarity, not speed.

// decisive reports whether d is a decision that replaces the earlier
// consents of its organisation.
func decisive(d access.Consent) bool {
	return d.Status == access.ConsentActive || d.Status == access.ConsentInactive || d.Status == access.ConsentRejected
}

// replacedFor reports whether organisation o has a decision later than c,
// or, when tied counts, one with the same dateTime that is not an active
// permit.
func replacedFor(cs []access.Consent, i int, o string, tied bool) bool {
	c := cs[i]
	for j, d := range cs {
		if j == i || !decisive(d) || !slices.Contains(d.Organizations, o) {
			continue
		}
		if d.DateTime.After(c.DateTime) {
			return true
		}
		if tied && d.DateTime.Equal(c.DateTime) && (d.Status != access.ConsentActive || d.Provision.Type != access.ProvisionPermit) {
			return true
		}
	}
	return false
}

// permitWitness is a consent that permits req: active, replaced for none
// of its organisations, a permit in period naming the category (or every
// category), the source (or any) and the recipient (or any).
func permitWitness(cs []access.Consent, req access.ConsentRequest) (int, bool) {
	for i, c := range cs {
		p := c.Provision
		if c.Status != access.ConsentActive || p.Type != access.ProvisionPermit || !p.Period.Covers(req.At) {
			continue
		}
		if len(p.Codes) > 0 && !slices.Contains(p.Codes, access.Coding{System: fhir.SystemLOINC, Code: req.Category}) {
			continue
		}
		if len(p.Custodians) > 0 && !slices.Contains(p.Custodians, req.Source) {
			continue
		}
		if len(p.Recipients) > 0 && !slices.Contains(p.Recipients, req.Requester.URA) {
			continue
		}
		replaced := false
		for _, o := range c.Organizations {
			replaced = replaced || replacedFor(cs, i, o, true)
		}
		if !replaced {
			return i, true
		}
	}
	return -1, false
}

// applicableDeny is an active consent, not replaced for at least one of
// its organisations, with a deny provision anywhere that names the
// request: within its period and its ancestors', naming the category (or
// every one, or a code that is not LOINC), the source (or every one) and
// the recipient (or every one).
func applicableDeny(cs []access.Consent, req access.ConsentRequest) bool {
	var walk func(p access.Provision, ancestors []access.Period) bool
	walk = func(p access.Provision, ancestors []access.Period) bool {
		ancestors = append(ancestors, p.Period)
		for _, per := range ancestors {
			if !per.Covers(req.At) {
				return false
			}
		}
		if p.Type == access.ProvisionDeny &&
			(len(p.Codes) == 0 || slices.ContainsFunc(p.Codes, func(c access.Coding) bool {
				return c.System != fhir.SystemLOINC || c.Code == req.Category
			})) &&
			(len(p.Custodians) == 0 || slices.Contains(p.Custodians, req.Source)) &&
			(len(p.Recipients) == 0 || slices.Contains(p.Recipients, req.Requester.URA)) {
			return true
		}
		for _, n := range p.Provisions {
			if walk(n, slices.Clone(ancestors)) {
				return true
			}
		}
		return false
	}
	for i, c := range cs {
		if c.Status != access.ConsentActive {
			continue
		}
		inForce := false
		for _, o := range c.Organizations {
			inForce = inForce || !replacedFor(cs, i, o, false)
		}
		if inForce && walk(c.Provision, nil) {
			return true
		}
	}
	return false
}

// checkConsentProperties decides req over cs and checks every property.
func checkConsentProperties(t *testing.T, cs []access.Consent, req access.ConsentRequest, shuffle func([]access.Consent)) access.Decision {
	t.Helper()
	d := access.DecideConsent(cs, req)
	_, witness := permitWitness(cs, req)
	deny := applicableDeny(cs, req)
	// Safety: a permit has an active, in-period permit consent naming
	// this category, source and recipient (or all), not replaced, and no
	// applicable deny anywhere.
	if d.Permit && !witness {
		t.Fatalf("permit without a consent that permits: %q\n%+v", d.Reasons, cs)
	}
	if d.Permit && deny {
		t.Fatalf("permit despite a deny for this request: %q\n%+v", d.Reasons, cs)
	}
	// Completeness: what the patient permitted and nothing excludes is
	// permitted.
	if witness && !deny && !d.Permit {
		t.Fatalf("denied although permitted and not excluded: %q\n%+v", d.Reasons, cs)
	}
	if len(d.Reasons) == 0 || slices.Contains(d.Reasons, "") {
		t.Fatalf("empty reasons: %q", d.Reasons)
	}
	if text := strings.Join(d.Reasons, " "); identifierLike.MatchString(text) {
		t.Fatalf("reasons carry an identifier: %s", text)
	}
	if (d.Scope == access.ScopeAll) != d.Permit {
		t.Fatalf("scope %v with permit %v", d.Scope, d.Permit)
	}
	if shuffle != nil && len(cs) > 1 {
		again := slices.Clone(cs)
		shuffle(again)
		if e := access.DecideConsent(again, req); e.Permit != d.Permit {
			t.Fatalf("the order of the consents changed the decision: %v then %v", d.Permit, e.Permit)
		}
	}
	// A later withdrawal by each organisation that permits leaves nothing
	// permitted by those organisations; a fresh organisation's deny of
	// this recipient always wins.
	if d.Permit {
		excluded := append(slices.Clone(cs), access.Consent{ID: "x", Status: access.ConsentActive, DateTime: day("2026-11-01"),
			Organizations: []string{"90000999"}, Provision: access.Provision{Type: access.ProvisionDeny, Recipients: []string{req.Requester.URA}}})
		if e := access.DecideConsent(excluded, req); e.Permit {
			t.Fatalf("a deny of the recipient by another organisation did not win: %q", e.Reasons)
		}
		withdrawn := slices.Clone(cs)
		for _, c := range cs {
			withdrawn = append(withdrawn, access.Consent{ID: "w", Status: access.ConsentInactive, DateTime: day("2030-01-01"),
				Organizations: c.Organizations, Provision: access.Provision{Type: access.ProvisionPermit}})
		}
		if e := access.DecideConsent(withdrawn, req); e.Permit {
			t.Fatalf("still permitted after every organisation withdrew: %q", e.Reasons)
		}
	}
	return d
}

func TestConsentProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 4)) // fixed seed: issue 6, item 4
	n := 20000
	if testing.Short() {
		n = 2000
	}
	c := randChooser{r}
	shuffle := func(cs []access.Consent) { r.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] }) }
	permits, denies := 0, 0
	for range n {
		cs := genConsents(c, 6)
		d := checkConsentProperties(t, cs, genRequest(c), shuffle)
		if d.Permit {
			permits++
		} else {
			denies++
		}
	}
	// The generator must reach both outcomes often, or the property says
	// little.
	if permits < n/20 || denies < n/20 {
		t.Errorf("permits %d, denies %d of %d: the generator is lopsided", permits, denies, n)
	}
	t.Logf("permits %d, denies %d", permits, denies)
}

// FuzzConsentDecision checks the same properties on consent sets built
// from the fuzz input's bytes.
func FuzzConsentDecision(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 16 {
		b := make([]byte, 64)
		for i := 0; i < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], r.Uint64())
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &byteChooser{b: b}
		cs := genConsents(c, 8)
		req := genRequest(c)
		checkConsentProperties(t, cs, req, func(cs []access.Consent) { slices.Reverse(cs) })
	})
}

// FuzzParseConsent: any body parses to a consent that can be decided, or
// to an ErrInvalidConsent that repeats no identifier; never a panic.
func FuzzParseConsent(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "consent", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := access.ParseConsent(b)
		if err != nil {
			if !errors.Is(err, access.ErrInvalidConsent) {
				t.Fatalf("error %v does not wrap ErrInvalidConsent", err)
			}
			fe := fhir.AsError(err)
			if fe.Kind != fhir.KindUnprocessable || len(fe.Issues) != 1 || fe.Issues[0].Diagnostics == "" {
				t.Fatalf("error %v: want one unprocessable issue", err)
			}
			if longDigits.MatchString(err.Error()) {
				t.Fatalf("error repeats an identifier: %v", err)
			}
			return
		}
		for _, req := range []access.ConsentRequest{request(med, orgA, recR), request(gps, orgGP, recR2)} {
			checkConsentProperties(t, []access.Consent{c}, req, nil)
		}
	})
}
