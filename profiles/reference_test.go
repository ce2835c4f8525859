package profiles

// The validation of resources before ValidateSome and the invariants over
// bytes, kept for the differential test (differential_test.go): the new
// path must give exactly its issues.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// referenceRun is run as it was before ValidateSome and the invariants
// over bytes (commit fbc1bc2): every member decoded, the invariants walked
// over the decoded document. It validates body and returns the parsed
// resource (nil if base validation failed), the issues, and the kind of
// error they amount to. err is set, with an issue saying so, when
// validation could not be done: ctx ended or the parser failed
// unexpectedly.
func (v *Validator) referenceRun(ctx context.Context, body []byte, profileURL string, source bool) (*fhir.Resource, []fhir.Issue, fhir.Kind, error) {
	if err := ctx.Err(); err != nil {
		return nil, []fhir.Issue{{Severity: "error", Code: "timeout", Diagnostics: "validation was cancelled"}}, fhir.KindUnavailable, err
	}
	kind := fhir.KindUnprocessable
	var issues []fhir.Issue
	parse := v.parser.Parse
	if source && v.base != nil {
		parse = v.base.Validate
	}
	res, err := parse(body, "")
	var doc map[string]any
	if err != nil {
		fe := fhir.AsError(err)
		issues = append(issues, fe.Issues...)
		kind = fe.Kind
		if kind != fhir.KindInvalid && kind != fhir.KindUnprocessable {
			return nil, issues, kind, err
		}
		// Report the profile's findings too, when there is a resource to
		// look at.
		if doc = referenceDecode(body); doc == nil {
			return nil, issues, kind, nil
		}
		res = nil
	} else {
		doc = res.Doc
	}
	rt, _ := doc["resourceType"].(string)

	var apply []*profile
	seen := map[string]bool{}
	use := func(url string, unknown func()) {
		p := v.lookup(url)
		if p == nil {
			unknown()
			return
		}
		if seen[p.url] {
			return
		}
		seen[p.url] = true
		if p.typ != rt {
			issues = append(issues, fhir.Issue{Severity: "error", Code: "processing",
				Diagnostics: fmt.Sprintf("profile %s constrains %s, not %s", p.url, p.typ, rt)})
			return
		}
		apply = append(apply, p)
	}
	if profileURL != "" {
		use(profileURL, func() {
			issues = append(issues, fhir.Issue{Severity: "error", Code: "not-supported",
				Diagnostics: fmt.Sprintf("profile %s is not known to this server", profileURL)})
		})
	}
	if source {
		if u := sourceProfile(doc); u != "" {
			use(u, func() {})
		}
	}
	for i, u := range metaProfiles(doc) {
		use(u, func() {
			if !source {
				issues = append(issues, fhir.Issue{Severity: "error", Code: "not-supported",
					Diagnostics: fmt.Sprintf("meta.profile names profile %s, which is not known to this server", u),
					Expression:  []string{rt + ".meta.profile[" + strconv.Itoa(i) + "]"}})
			}
		})
	}
	for _, p := range apply {
		issues = v.schemaIssues(p.schema, doc, rt, "", issues)
	}
	if rt == "Bundle" {
		issues = v.entries(ctx, doc, rt, "", source, 1, issues)
	}
	issues = append(issues, referenceInvariants(doc, rt)...)
	if err := ctx.Err(); err != nil {
		return nil, append(issues, fhir.Issue{Severity: "error", Code: "timeout", Diagnostics: "validation was cancelled"}), fhir.KindUnavailable, err
	}
	return res, tidy(issues), kind, nil
}

// referenceDecode decodes a JSON object with a resourceType, or returns nil.
func referenceDecode(body []byte) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil
	}
	if _, ok := doc["resourceType"].(string); !ok {
		return nil
	}
	return doc
}

// referenceInvariants is invariants as it was (commit fbc1bc2), over a
// decoded document. It runs the checks a JSON Schema cannot express over a
// whole resource, contained and Bundle-entry resources included:
//
//   - sp-bsn-1: an identifier with the BSN system passes the eleven-check;
//   - sp-ura-1: an identifier with the URA system is eight digits;
//   - per-1 (R4): a Period's start is not after its end;
//   - ppc-1 (R4): a Consent has a policy or a policyRule. The Consent shape of
//     DESIGN.md section 9 has neither, so this one is a warning.
//
// Diagnostics never quote the value at fault.
func referenceInvariants(doc map[string]any, root string) []fhir.Issue {
	w := &refWalker{root: root}
	w.walk(doc)
	return w.issues
}

type refWalker struct {
	root   string
	segs   []refSeg // the path to the value being walked
	issues []fhir.Issue
}

// refSeg is a step of the path: a key (idx < 0), or an array index.
type refSeg struct {
	key string
	idx int
}

func (w *refWalker) add(severity, diagnostics string, segs ...string) {
	p := make([]string, 0, len(w.segs)+len(segs))
	for _, s := range w.segs {
		if s.idx >= 0 {
			p = append(p, strconv.Itoa(s.idx))
		} else {
			p = append(p, s.key)
		}
	}
	w.issues = append(w.issues, fhir.Issue{Severity: severity, Code: "invariant", Diagnostics: diagnostics,
		Expression: []string{segmentsPath(w.root, append(p, segs...))}})
}

// walk visits the objects within v (the checks look at objects only).
func (w *refWalker) walk(v any) {
	switch x := v.(type) {
	case map[string]any:
		w.object(x)
		for k, val := range x {
			w.periods(k, val)
			switch val.(type) {
			case map[string]any, []any:
				w.segs = append(w.segs, refSeg{key: k, idx: -1})
				w.walk(val)
				w.segs = w.segs[:len(w.segs)-1]
			}
		}
	case []any:
		for i, it := range x {
			switch it.(type) {
			case map[string]any, []any:
				w.segs = append(w.segs, refSeg{idx: i})
				w.walk(it)
				w.segs = w.segs[:len(w.segs)-1]
			}
		}
	}
}

func (w *refWalker) object(x map[string]any) {
	if value, ok := x["value"].(string); ok {
		switch x["system"] {
		case fhir.SystemBSN:
			if !fhir.ValidBSN(value) {
				w.add("error", "sp-bsn-1: the identifier's value is not a valid BSN (nine digits passing the eleven-check)", "value")
			}
		case fhir.SystemURA:
			if !fhir.ValidURA(value) {
				w.add("error", "sp-ura-1: the identifier's value is not a valid URA (eight digits)", "value")
			}
		}
	}
	if x["resourceType"] == "Consent" && x["policy"] == nil && x["policyRule"] == nil {
		w.add("warning", "ppc-1: a Consent should name a policy or a policyRule (R4 invariant ppc-1)")
	}
}

// periods checks the Period (or Periods) under key k.
func (w *refWalker) periods(k string, val any) {
	if k != "period" && !strings.HasSuffix(k, "Period") {
		return
	}
	switch p := val.(type) {
	case map[string]any:
		w.period(p, k)
	case []any:
		for i, it := range p {
			if pm, ok := it.(map[string]any); ok {
				w.period(pm, k, strconv.Itoa(i))
			}
		}
	}
}

// period reports a Period whose start is certainly after its end: every
// instant its start may stand for lies at or after the end of the range its
// end stands for (per-1 compares at the lower precision).
func (w *refWalker) period(p map[string]any, segs ...string) {
	start, ok1 := p["start"].(string)
	end, ok2 := p["end"].(string)
	if !ok1 || !ok2 {
		return
	}
	s, ok1 := fhir.ParseDateRange(start)
	e, ok2 := fhir.ParseDateRange(end)
	if ok1 && ok2 && s.Lo >= e.Hi {
		w.add("error", "per-1: the period's start is after its end", append(segs, "start")...)
	}
}
