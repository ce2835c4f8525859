package profiles

import (
	"strconv"
	"strings"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// invariants runs the checks a JSON Schema cannot express over a whole
// resource, contained and Bundle-entry resources included:
//
//   - sp-bsn-1: an identifier with the BSN system passes the eleven-check;
//   - sp-ura-1: an identifier with the URA system is eight digits;
//   - per-1 (R4): a Period's start is not after its end;
//   - ppc-1 (R4): a Consent has a policy or a policyRule. The Consent shape of
//     DESIGN.md section 9 has neither, so this one is a warning.
//
// Diagnostics never quote the value at fault.
func invariants(doc map[string]any, root string) []fhir.Issue {
	w := &walker{root: root}
	w.walk(doc)
	return w.issues
}

type walker struct {
	root   string
	segs   []seg // the path to the value being walked
	issues []fhir.Issue
}

// seg is a step of the path: a key (idx < 0), or an array index.
type seg struct {
	key string
	idx int
}

func (w *walker) add(severity, diagnostics string, segs ...string) {
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
func (w *walker) walk(v any) {
	switch x := v.(type) {
	case map[string]any:
		w.object(x)
		for k, val := range x {
			w.periods(k, val)
			switch val.(type) {
			case map[string]any, []any:
				w.segs = append(w.segs, seg{key: k, idx: -1})
				w.walk(val)
				w.segs = w.segs[:len(w.segs)-1]
			}
		}
	case []any:
		for i, it := range x {
			switch it.(type) {
			case map[string]any, []any:
				w.segs = append(w.segs, seg{idx: i})
				w.walk(it)
				w.segs = w.segs[:len(w.segs)-1]
			}
		}
	}
}

func (w *walker) object(x map[string]any) {
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
func (w *walker) periods(k string, val any) {
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
func (w *walker) period(p map[string]any, segs ...string) {
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
