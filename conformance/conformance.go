// Package conformance is the table of what Schakelpunt's FHIR API does: the
// resource types, their interactions and operations, and their search
// parameters. The routes are registered from this table and the
// CapabilityStatement is rendered from it, so the two cannot drift apart.
package conformance

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Interaction is a FHIR RESTful interaction code.
type Interaction string

// The interactions of the R4 CapabilityStatement (TypeRestfulInteraction).
const (
	Read            Interaction = "read"
	VRead           Interaction = "vread"
	Update          Interaction = "update"
	Delete          Interaction = "delete"
	HistoryInstance Interaction = "history-instance"
	HistoryType     Interaction = "history-type"
	Create          Interaction = "create"
	SearchType      Interaction = "search-type"
)

// Operation is an extended operation ($name) on a type or instance.
type Operation struct {
	Name       string // without the $
	Definition string // canonical URL of the OperationDefinition
	Type       bool   // invocable on the type: [base]/Type/$name
	Instance   bool   // invocable on an instance: [base]/Type/id/$name
	Methods    []string
}

// Resource is one row of the table: a resource type and what clients may
// do with it.
type Resource struct {
	Type              string
	Documentation     string
	Interactions      []Interaction
	ConditionalCreate bool
	ConditionalUpdate bool
	ConditionalDelete bool
	// UpdateOnly: an update needs the resource to exist (no create by
	// update, updateCreate false).
	UpdateOnly bool
	Operations []Operation
}

// Has reports whether the type supports interaction i.
func (r Resource) Has(i Interaction) bool {
	for _, x := range r.Interactions {
		if x == i {
			return true
		}
	}
	return false
}

// SearchParams are the type's search parameters (fhir's definitions).
func (r Resource) SearchParams() []fhir.SearchParam { return fhir.SearchParams(r.Type) }

var (
	crud     = []Interaction{Read, VRead, Update, Delete, HistoryInstance, HistoryType, Create, SearchType}
	registry = []Interaction{Read, VRead, HistoryInstance, HistoryType, SearchType}
)

// validate is the $validate operation, on every type.
var validate = Operation{Name: "validate", Definition: "http://hl7.org/fhir/OperationDefinition/Resource-validate", Type: true, Instance: true}

// Table is the interaction table of the API (DESIGN.md section 2), in the
// order the CapabilityStatement lists it.
func Table() []Resource {
	rows := []Resource{
		{
			Type:          "AuditEvent",
			Documentation: "The access log. Written by the server only; clients read and search.",
			Interactions:  []Interaction{Read, SearchType},
		},
		{
			Type:              "Consent",
			Documentation:     "Patients' opt-in consents, versioned with history.",
			Interactions:      crud,
			ConditionalCreate: true, ConditionalUpdate: true, ConditionalDelete: true,
		},
		{
			Type:          "Endpoint",
			Documentation: "Where the source systems are reached. Maintained by the operator through configuration.",
			Interactions:  registry,
		},
		{
			Type:          "Flag",
			Documentation: "Abuse alerts raised by the switching point from the access log, each pointing at the AuditEvents that triggered it. Supervisors only: they read them, and close one they reviewed by an update that changes only its status and period.end (the history keeps each version).",
			Interactions:  []Interaction{Read, VRead, Update, HistoryInstance, SearchType},
			UpdateOnly:    true,
		},
		{
			Type:          "MedicationDispense",
			Documentation: "Federated: searched at the sources that registered the patient, when the role and the patient's consent admit it; nothing is stored here.",
			Interactions:  []Interaction{SearchType},
		},
		{
			Type:          "Organization",
			Documentation: "The registry of source organisations. Maintained by the operator through configuration.",
			Interactions:  registry,
		},
		{
			Type:          "StructureDefinition",
			Documentation: "Schakelpunt's own profiles (read-only).",
			Interactions:  []Interaction{Read, SearchType},
		},
		{
			Type:              "Patient",
			Documentation:     "The patient index: one entry per (source organisation, BSN), minimal by profile.",
			Interactions:      crud,
			ConditionalCreate: true, ConditionalUpdate: true, ConditionalDelete: true,
			Operations: []Operation{
				{Name: "summary", Definition: "http://hl7.org/fhir/uv/ips/OperationDefinition/summary", Type: true},
				{Name: "ihe-pix", Definition: "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix", Type: true},
			},
		},
	}
	for i := range rows {
		// Each row gets its own slices: callers cannot change the table.
		rows[i].Interactions = slices.Clone(rows[i].Interactions)
		rows[i].Operations = append(rows[i].Operations, validate)
		rows[i].Operations[len(rows[i].Operations)-1].Methods = slices.Clone(validate.Methods)
	}
	return rows
}

// Lookup returns the row of a resource type.
func Lookup(typ string) (Resource, bool) {
	for _, r := range Table() {
		if r.Type == typ {
			return r, true
		}
	}
	return Resource{}, false
}

// Software describes the server in the CapabilityStatement.
type Software struct {
	Name, Version string
}

// CapabilityStatement renders the table as an R4 CapabilityStatement for
// the server at base.
// supported lists our profiles per resource type (canonical|version).
func CapabilityStatement(base string, sw Software, published time.Time, supported map[string][]string) ([]byte, error) {
	type code struct {
		Code string `json:"code"`
	}
	type searchParam struct {
		Name          string `json:"name"`
		Definition    string `json:"definition,omitempty"`
		Type          string `json:"type"`
		Documentation string `json:"documentation,omitempty"`
	}
	type operation struct {
		Name       string `json:"name"`
		Definition string `json:"definition"`
	}
	type resource struct {
		Type              string        `json:"type"`
		Profile           string        `json:"profile,omitempty"`
		SupportedProfile  []string      `json:"supportedProfile,omitempty"`
		Documentation     string        `json:"documentation,omitempty"`
		Interaction       []code        `json:"interaction"`
		Versioning        string        `json:"versioning"`
		ReadHistory       bool          `json:"readHistory"`
		UpdateCreate      bool          `json:"updateCreate"`
		ConditionalCreate bool          `json:"conditionalCreate"`
		ConditionalUpdate bool          `json:"conditionalUpdate"`
		ConditionalDelete string        `json:"conditionalDelete"`
		SearchParam       []searchParam `json:"searchParam,omitempty"`
		Operation         []operation   `json:"operation,omitempty"`
	}
	var resources []resource
	for _, r := range Table() {
		res := resource{
			Type:              r.Type,
			Profile:           "http://hl7.org/fhir/StructureDefinition/" + r.Type,
			SupportedProfile:  supported[r.Type],
			Documentation:     r.Documentation,
			Versioning:        "versioned-update",
			ReadHistory:       r.Has(VRead),
			UpdateCreate:      r.Has(Update) && !r.UpdateOnly,
			ConditionalCreate: r.ConditionalCreate,
			ConditionalUpdate: r.ConditionalUpdate,
			ConditionalDelete: "not-supported",
		}
		if r.ConditionalDelete {
			res.ConditionalDelete = "single"
		}
		for _, i := range r.Interactions {
			res.Interaction = append(res.Interaction, code{string(i)})
		}
		if r.Has(SearchType) {
			for _, p := range r.SearchParams() {
				res.SearchParam = append(res.SearchParam, searchParam{Name: p.Code, Definition: p.URL, Type: string(p.Type), Documentation: p.Description})
			}
		}
		for _, op := range r.Operations {
			res.Operation = append(res.Operation, operation{Name: op.Name, Definition: op.Definition})
		}
		resources = append(resources, res)
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         published.UTC().Format(time.RFC3339),
		"publisher":    "Schakelpunt",
		"kind":         "instance",
		"software":     map[string]string{"name": sw.Name, "version": sw.Version},
		"implementation": map[string]string{
			"description": "Schakelpunt: a national switching point for health data",
			"url":         base,
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"application/fhir+json", "json"},
		"rest": []map[string]any{{
			"mode": "server",
			"security": map[string]any{
				"cors":        false,
				"description": "Mutual TLS with UZI certificates; the certificate decides who is asking.",
			},
			"resource": resources,
		}},
	}
	return json.Marshal(cs)
}
