package storetest

import (
	"encoding/json"
	"strings"
)

// Systems used by the fixtures.
const (
	bsnSystem  = "http://fhir.nl/fhir/NamingSystem/bsn"
	uraSystem  = "http://fhir.nl/fhir/NamingSystem/ura"
	uziSystem  = "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers"
	loinc      = "http://loinc.org"
	sourceA    = "http://example.org/source-a/patient"
	bsnPatient = "999999011"
	bsnOther   = "999999023"
)

// patientJSON is an entry of the patient index: a BSN, the patient's id at the
// source, and the source organisation.
func patientJSON(bsn, localID, ura string, active bool) string {
	return render(map[string]any{
		"resourceType": "Patient",
		"identifier": []any{
			map[string]any{"system": bsnSystem, "value": bsn},
			map[string]any{"system": sourceA, "value": localID},
		},
		"active":               active,
		"managingOrganization": map[string]any{"reference": "Organization/" + ura},
	})
}

// consent describes a Consent fixture.
type consent struct {
	status   string
	bsn      string
	category string // LOINC code
	actor    string // Organization id
	dateTime string // "" for none
	periods  [][2]string
}

// consentJSON renders c. One period goes into provision.period; several (only
// to exercise multi-valued date terms) into an array of provisions.
func consentJSON(c consent) string {
	doc := map[string]any{
		"resourceType": "Consent",
		"status":       c.status,
		"scope": map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"category": []any{map[string]any{"coding": []any{map[string]any{"system": loinc, "code": c.category}}}},
		"patient":  map[string]any{"identifier": map[string]any{"system": bsnSystem, "value": c.bsn}},
	}
	if c.dateTime != "" {
		doc["dateTime"] = c.dateTime
	}
	var provisions []any
	for _, p := range c.periods {
		period := map[string]any{}
		if p[0] != "" {
			period["start"] = p[0]
		}
		if p[1] != "" {
			period["end"] = p[1]
		}
		prov := map[string]any{"type": "permit", "period": period}
		if c.actor != "" {
			prov["actor"] = []any{map[string]any{"reference": map[string]any{"reference": "Organization/" + c.actor}}}
		}
		provisions = append(provisions, prov)
	}
	switch len(provisions) {
	case 0:
		if c.actor != "" {
			doc["provision"] = map[string]any{"type": "permit", "actor": []any{map[string]any{"reference": map[string]any{"reference": "Organization/" + c.actor}}}}
		}
	case 1:
		doc["provision"] = provisions[0]
	default:
		doc["provision"] = provisions
	}
	return render(doc)
}

// auditJSON renders a query log entry: who asked, about which patient,
// when.
func auditJSON(recorded, uzi, patientID, outcome string) string {
	return render(map[string]any{
		"resourceType": "AuditEvent",
		"type":         map[string]any{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110112", "display": "Query"},
		"action":       "E",
		"recorded":     recorded,
		"outcome":      outcome,
		"agent": []any{map[string]any{
			"who":       map[string]any{"identifier": map[string]any{"system": uziSystem, "value": uzi}},
			"requestor": true,
		}},
		"source": map[string]any{"observer": map[string]any{"reference": "Device/schakelpunt"}},
		"entity": []any{map[string]any{"what": map[string]any{"reference": "Patient/" + patientID}}},
	})
}

// render marshals a fixture with resourceType first, as clients send it.
func render(doc map[string]any) string {
	rt := doc["resourceType"].(string)
	delete(doc, "resourceType")
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err) // fixtures are static
	}
	return `{"resourceType":"` + rt + `",` + strings.TrimPrefix(string(b), "{")
}

// Literal fixtures for the CRUD scenarios.
const (
	consentActive   = `{"resourceType":"Consent","status":"active","scope":{"coding":[{"code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999999011"}}}`
	consentInactive = `{"resourceType":"Consent","status":"inactive","scope":{"coding":[{"code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999999011"}}}`
	// A client may send an id and meta of its own: the store replaces id,
	// versionId and lastUpdated and keeps the rest of meta.
	consentWithMeta = `{"resourceType":"Consent","id":"other","meta":{"versionId":"7","lastUpdated":"2001-01-01T00:00:00Z","source":"urn:uuid:7d6a"},"status":"draft","scope":{"coding":[{"code":"patient-privacy"}]},"category":[{"coding":[{"code":"59284-0"}]}]}`
	patientMinimal  = `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999999011"}],"managingOrganization":{"reference":"Organization/90000111"}}`
)
