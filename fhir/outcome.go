package fhir

import "encoding/json"

type outcomeJSON struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id,omitempty"`
	Issue        []issueJSON `json:"issue"`
}

type issueJSON struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// OperationOutcome renders issues as an OperationOutcome resource. With no
// issues it renders the single informational "all ok" issue the spec asks
// for.
func OperationOutcome(issues ...Issue) []byte {
	oo := outcomeJSON{ResourceType: "OperationOutcome", Issue: make([]issueJSON, 0, len(issues))}
	for _, is := range issues {
		oo.Issue = append(oo.Issue, issueJSON(is))
	}
	if len(oo.Issue) == 0 {
		oo.Issue = append(oo.Issue, issueJSON{Severity: "information", Code: "informational", Diagnostics: "All OK"})
	}
	b, err := json.Marshal(oo)
	if err != nil {
		panic(err) // cannot happen: plain strings only
	}
	return b
}
