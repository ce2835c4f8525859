package detect

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// The vocabulary of the Flags the detector writes.
const (
	// SystemRule is the code system of Flag.code: the rule codes.
	SystemRule = "http://schakelpunt.nl/fhir/CodeSystem/abuse-rule"
	// EvidenceExtension (valueReference, repeating) points at an
	// AuditEvent that triggered the Flag. Flag has no element for its
	// evidence; DetectedIssue has (evidence.detail) but is about one
	// patient's clinical issue and cannot name a professional or an
	// organisation as its subject.
	EvidenceExtension = "http://schakelpunt.nl/fhir/StructureDefinition/flag-evidence"
	// OrganizationExtension (valueReference by URA, repeating) names the
	// organisations involved, for reports per organisation.
	OrganizationExtension = "http://schakelpunt.nl/fhir/StructureDefinition/flag-organization"
	systemFlagCategory    = "http://terminology.hl7.org/CodeSystem/flag-category"
)

var ruleText = map[string]string{
	RuleDistinctPatients:  "Many distinct patients queried by one professional",
	RuleNoRelationship:    "Query without a treatment relationship",
	RuleDenialBurst:       "Burst of denied queries",
	RuleUnusualHour:       "Query at an unusual hour for the organisation",
	RuleManyOrganisations: "One patient queried by many organisations",
}

// RuleDisplay is the rule in words.
func RuleDisplay(rule string) string { return ruleText[rule] }

type flagCoding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type flagConcept struct {
	Coding []flagCoding `json:"coding"`
	Text   string       `json:"text,omitempty"`
}

type flagIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type flagReference struct {
	Reference  string          `json:"reference,omitempty"`
	Type       string          `json:"type,omitempty"`
	Identifier *flagIdentifier `json:"identifier,omitempty"`
	Display    string          `json:"display,omitempty"`
}

type flagExtension struct {
	URL            string        `json:"url"`
	ValueReference flagReference `json:"valueReference"`
}

type flagPeriod struct {
	Start string `json:"start"`
}

type flagResource struct {
	ResourceType string          `json:"resourceType"`
	ID           string          `json:"id"`
	Extension    []flagExtension `json:"extension,omitempty"`
	Status       string          `json:"status"`
	Category     []flagConcept   `json:"category"`
	Code         flagConcept     `json:"code"`
	Subject      flagReference   `json:"subject"`
	Period       flagPeriod      `json:"period"`
	Author       flagReference   `json:"author"`
}

// Flag renders a hit as an active FHIR Flag with id id: category admin,
// code the rule, subject the professional, organisation or patient, and
// an EvidenceExtension per AuditEvent that triggered it.
func Flag(h Hit, id string) ([]byte, error) {
	f := flagResource{
		ResourceType: "Flag", ID: id, Status: "active",
		Category: []flagConcept{{Coding: []flagCoding{{System: systemFlagCategory, Code: "admin", Display: "Administrative"}}}},
		Code:     flagConcept{Coding: []flagCoding{{System: SystemRule, Code: h.Rule, Display: RuleDisplay(h.Rule)}}, Text: h.Text},
		Subject:  flagReference{Type: h.Subject.Type, Identifier: &flagIdentifier{System: h.Subject.System, Value: h.Subject.Value}},
		Period:   flagPeriod{Start: fhir.FormatInstant(h.At)},
		Author:   flagReference{Type: "Device", Display: "Schakelpunt abuse detection"},
	}
	for _, ura := range h.URAs {
		f.Extension = append(f.Extension, flagExtension{URL: OrganizationExtension,
			ValueReference: flagReference{Type: "Organization", Identifier: &flagIdentifier{System: fhir.SystemURA, Value: ura}}})
	}
	for _, ev := range h.Evidence {
		f.Extension = append(f.Extension, flagExtension{URL: EvidenceExtension, ValueReference: flagReference{Reference: "AuditEvent/" + ev}})
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("detect: flag: %w", err)
	}
	return b, nil
}

// FlagWrite is the store write of a hit's Flag, with its index terms.
func FlagWrite(h Hit, id string) (store.Write, error) {
	body, err := Flag(h, id)
	if err != nil {
		return store.Write{}, err
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return store.Write{}, fmt.Errorf("detect: flag: %w", err)
	}
	return store.Write{Type: "Flag", ID: id, Body: body, Terms: fhir.ExtractTerms("Flag", doc)}, nil
}

// StoredFlag is what a report needs of a stored Flag.
type StoredFlag struct {
	ID       string
	At       time.Time // period.start
	Rule     string
	URAs     []string
	Evidence []string
}

// ParseFlag reads a Flag the detector wrote.
func ParseFlag(body []byte) (StoredFlag, error) {
	var f flagResource
	if err := json.Unmarshal(body, &f); err != nil {
		return StoredFlag{}, fmt.Errorf("detect: Flag: %w", err)
	}
	if f.ResourceType != "Flag" {
		return StoredFlag{}, fmt.Errorf("detect: a %s is not a Flag", f.ResourceType)
	}
	s := StoredFlag{ID: f.ID}
	if f.Period.Start != "" {
		at, err := time.Parse(time.RFC3339Nano, f.Period.Start)
		if err != nil {
			return StoredFlag{}, fmt.Errorf("detect: Flag/%s period: %w", f.ID, err)
		}
		s.At = at
	}
	for _, c := range f.Code.Coding {
		if c.System == SystemRule {
			s.Rule = c.Code
		}
	}
	for _, e := range f.Extension {
		switch e.URL {
		case OrganizationExtension:
			if e.ValueReference.Identifier != nil {
				s.URAs = append(s.URAs, e.ValueReference.Identifier.Value)
			}
		case EvidenceExtension:
			if ev, ok := strings.CutPrefix(e.ValueReference.Reference, "AuditEvent/"); ok && ev != "" {
				s.Evidence = append(s.Evidence, ev)
			}
		}
	}
	return s, nil
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
