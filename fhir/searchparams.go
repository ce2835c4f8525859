package fhir

import (
	"slices"
	"sort"
)

// ParamType is a search parameter type.
type ParamType string

// The search parameter types we index.
const (
	TypeToken     ParamType = "token"
	TypeReference ParamType = "reference"
	TypeDate      ParamType = "date"
	TypeURI       ParamType = "uri" // indexed and matched like a token code
)

// SearchParam defines one search parameter after its R4 SearchParameter
// resource: the code, the type, the FHIRPath expression it publishes and
// the element paths it is extracted from. Terms are extracted once from a
// resource through Paths (dot-separated element names; arrays are walked;
// a reference path may be limited to references of one resource type with
// OnlyType).
type SearchParam struct {
	Code        string
	Base        string
	Type        ParamType
	URL         string // canonical URL of the R4 definition
	Expression  string
	Description string
	Paths       []string
	Targets     []string // reference targets
	OnlyType    string   // reference: keep only references to this type
}

const r4 = "http://hl7.org/fhir/SearchParameter/"

// Common parameters every type has.
var commonParams = []SearchParam{
	{Code: "_id", Type: TypeToken, URL: r4 + "Resource-id", Expression: "Resource.id", Description: "Logical id of this artifact", Paths: []string{"id"}},
	{Code: "_lastUpdated", Type: TypeDate, URL: r4 + "Resource-lastUpdated", Expression: "Resource.meta.lastUpdated", Description: "When the resource version last changed", Paths: []string{"meta.lastUpdated"}},
}

// typeParams are the parameters of DESIGN.md section 2, defined from the
// R4 SearchParameter definitions.
var typeParams = map[string][]SearchParam{
	"Patient": {
		{Code: "identifier", Type: TypeToken, URL: r4 + "Patient-identifier", Expression: "Patient.identifier", Description: "A patient identifier (the BSN)", Paths: []string{"identifier"}},
		{Code: "organization", Type: TypeReference, URL: r4 + "Patient-organization", Expression: "Patient.managingOrganization", Description: "The organization that is the custodian of the patient record", Paths: []string{"managingOrganization"}, Targets: []string{"Organization"}},
		{Code: "active", Type: TypeToken, URL: r4 + "Patient-active", Expression: "Patient.active", Description: "Whether the patient record is active", Paths: []string{"active"}},
		{Code: "link", Type: TypeReference, URL: r4 + "Patient-link", Expression: "Patient.link.other", Description: "All patients linked to the given patient", Paths: []string{"link.other"}, Targets: []string{"Patient", "RelatedPerson"}},
	},
	"Consent": {
		{Code: "patient", Type: TypeReference, URL: r4 + "clinical-patient", Expression: "Consent.patient", Description: "Who the consent applies to", Paths: []string{"patient"}, Targets: []string{"Patient"}},
		{Code: "status", Type: TypeToken, URL: r4 + "Consent-status", Expression: "Consent.status", Description: "draft | proposed | active | rejected | inactive | entered-in-error", Paths: []string{"status"}},
		{Code: "category", Type: TypeToken, URL: r4 + "Consent-category", Expression: "Consent.category", Description: "Classification of the consent statement", Paths: []string{"category"}},
		{Code: "scope", Type: TypeToken, URL: r4 + "Consent-scope", Expression: "Consent.scope", Description: "Which of the four areas this resource covers", Paths: []string{"scope"}},
		{Code: "actor", Type: TypeReference, URL: r4 + "Consent-actor", Expression: "Consent.provision.actor.reference", Description: "Resource for the actor (or group, by role)", Paths: []string{"provision.actor.reference", "provision.provision.actor.reference"}, Targets: []string{"Organization", "Practitioner", "PractitionerRole", "Patient", "CareTeam", "Device", "Group", "RelatedPerson"}},
		{Code: "action", Type: TypeToken, URL: r4 + "Consent-action", Expression: "Consent.provision.action", Description: "Actions controlled by this rule", Paths: []string{"provision.action"}},
		{Code: "period", Type: TypeDate, URL: r4 + "Consent-period", Expression: "Consent.provision.period", Description: "Timeframe for this rule", Paths: []string{"provision.period"}},
		{Code: "date", Type: TypeDate, URL: r4 + "clinical-date", Expression: "Consent.dateTime", Description: "When this Consent was created or indexed", Paths: []string{"dateTime"}},
		{Code: "organization", Type: TypeReference, URL: r4 + "Consent-organization", Expression: "Consent.organization", Description: "Custodian of the consent", Paths: []string{"organization"}, Targets: []string{"Organization"}},
	},
	"AuditEvent": {
		{Code: "patient", Type: TypeReference, URL: r4 + "AuditEvent-patient", Expression: "AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)", Description: "Identity of the patient the event is about", Paths: []string{"agent.who", "entity.what"}, Targets: []string{"Patient"}, OnlyType: "Patient"},
		{Code: "agent", Type: TypeReference, URL: r4 + "AuditEvent-agent", Expression: "AuditEvent.agent.who", Description: "Identifier of who", Paths: []string{"agent.who"}, Targets: []string{"Practitioner", "Organization", "Device", "Patient", "PractitionerRole", "RelatedPerson"}},
		{Code: "agent-role", Type: TypeToken, URL: r4 + "AuditEvent-agent-role", Expression: "AuditEvent.agent.role", Description: "Agent role in the event", Paths: []string{"agent.role"}},
		{Code: "entity", Type: TypeReference, URL: r4 + "AuditEvent-entity", Expression: "AuditEvent.entity.what", Description: "Specific instance of resource", Paths: []string{"entity.what"}, Targets: []string{"Resource"}},
		{Code: "date", Type: TypeDate, URL: r4 + "AuditEvent-date", Expression: "AuditEvent.recorded", Description: "Time when the event was recorded", Paths: []string{"recorded"}},
		{Code: "type", Type: TypeToken, URL: r4 + "AuditEvent-type", Expression: "AuditEvent.type", Description: "Type/identifier of event", Paths: []string{"type"}},
		{Code: "subtype", Type: TypeToken, URL: r4 + "AuditEvent-subtype", Expression: "AuditEvent.subtype", Description: "More specific type/id for the event", Paths: []string{"subtype"}},
		{Code: "action", Type: TypeToken, URL: r4 + "AuditEvent-action", Expression: "AuditEvent.action", Description: "Type of action performed during the event", Paths: []string{"action"}},
		{Code: "outcome", Type: TypeToken, URL: r4 + "AuditEvent-outcome", Expression: "AuditEvent.outcome", Description: "Whether the event succeeded or failed", Paths: []string{"outcome"}},
		{Code: "source", Type: TypeReference, URL: r4 + "AuditEvent-source", Expression: "AuditEvent.source.observer", Description: "The identity of source detecting the event", Paths: []string{"source.observer"}, Targets: []string{"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"}},
	},
	"Flag": {
		{Code: "subject", Type: TypeReference, URL: r4 + "Flag-subject", Expression: "Flag.subject", Description: "The professional (UZI number), organisation (URA) or patient (BSN) an abuse alert is about: subject:identifier=system|value", Paths: []string{"subject"}, Targets: []string{"Practitioner", "Organization", "Patient"}},
		{Code: "patient", Type: TypeReference, URL: r4 + "clinical-patient", Expression: "Flag.subject.where(resolve() is Patient)", Description: "The patient an abuse alert is about: patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|<bsn>", Paths: []string{"subject"}, Targets: []string{"Patient"}, OnlyType: "Patient"},
		{Code: "date", Type: TypeDate, URL: r4 + "clinical-date", Expression: "Flag.period", Description: "When the alert was raised", Paths: []string{"period"}},
		{Code: "code", Type: TypeToken, URL: "http://schakelpunt.nl/fhir/SearchParameter/Flag-code", Expression: "Flag.code", Description: "The detection rule (http://schakelpunt.nl/fhir/CodeSystem/abuse-rule)", Paths: []string{"code"}},
		{Code: "status", Type: TypeToken, URL: "http://schakelpunt.nl/fhir/SearchParameter/Flag-status", Expression: "Flag.status", Description: "active | inactive | entered-in-error", Paths: []string{"status"}},
	},
	"Organization": {
		{Code: "identifier", Type: TypeToken, URL: r4 + "Organization-identifier", Expression: "Organization.identifier", Description: "Any identifier for the organization (the URA)", Paths: []string{"identifier"}},
		{Code: "active", Type: TypeToken, URL: r4 + "Organization-active", Expression: "Organization.active", Description: "Is the Organization record active", Paths: []string{"active"}},
		{Code: "type", Type: TypeToken, URL: r4 + "Organization-type", Expression: "Organization.type", Description: "A code for the type of organization", Paths: []string{"type"}},
		{Code: "endpoint", Type: TypeReference, URL: r4 + "Organization-endpoint", Expression: "Organization.endpoint", Description: "Technical endpoints providing access to services operated for the organization", Paths: []string{"endpoint"}, Targets: []string{"Endpoint"}},
	},
	"MedicationDispense": {
		{Code: "patient", Type: TypeReference, URL: r4 + "clinical-patient", Expression: "MedicationDispense.subject.where(resolve() is Patient)", Description: "The patient by BSN: patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|<bsn>", Paths: []string{"subject"}, Targets: []string{"Patient"}},
		{Code: "whenhandedover", Type: TypeDate, URL: r4 + "MedicationDispense-whenhandedover", Expression: "MedicationDispense.whenHandedOver", Description: "Returns dispenses handed over on this date", Paths: []string{"whenHandedOver"}},
		{Code: "status", Type: TypeToken, URL: r4 + "medications-status", Expression: "MedicationDispense.status", Description: "Returns dispenses with a specified dispense status", Paths: []string{"status"}},
	},
	"StructureDefinition": {
		{Code: "url", Type: TypeURI, URL: r4 + "conformance-url", Expression: "StructureDefinition.url", Description: "The uri that identifies the structure definition", Paths: []string{"url"}},
		{Code: "type", Type: TypeToken, URL: r4 + "StructureDefinition-type", Expression: "StructureDefinition.type", Description: "Type defined or constrained by this structure", Paths: []string{"type"}},
		{Code: "version", Type: TypeToken, URL: r4 + "conformance-version", Expression: "StructureDefinition.version", Description: "The business version of the structure definition", Paths: []string{"version"}},
	},
	"Endpoint": {
		{Code: "identifier", Type: TypeToken, URL: r4 + "Endpoint-identifier", Expression: "Endpoint.identifier", Description: "Identifies this endpoint across multiple systems", Paths: []string{"identifier"}},
		{Code: "organization", Type: TypeReference, URL: r4 + "Endpoint-organization", Expression: "Endpoint.managingOrganization", Description: "The organization that is managing the endpoint", Paths: []string{"managingOrganization"}, Targets: []string{"Organization"}},
		{Code: "status", Type: TypeToken, URL: r4 + "Endpoint-status", Expression: "Endpoint.status", Description: "The current status of the Endpoint (usually expected to be active)", Paths: []string{"status"}},
		{Code: "connection-type", Type: TypeToken, URL: r4 + "Endpoint-connection-type", Expression: "Endpoint.connectionType", Description: "Protocol/Profile/Standard to be used with this endpoint connection", Paths: []string{"connectionType"}},
	},
}

// SearchParams returns the search parameters of a resource type, common
// ones included, sorted by code. Unknown types have only the common ones.
// The result is the caller's own: changing it leaves the table alone.
func SearchParams(resourceType string) []SearchParam {
	out := make([]SearchParam, 0, len(commonParams)+len(typeParams[resourceType]))
	for _, p := range commonParams {
		p.Base = resourceType
		out = append(out, p)
	}
	for _, p := range typeParams[resourceType] {
		p.Base = resourceType
		out = append(out, p)
	}
	for i := range out {
		out[i].Paths = slices.Clone(out[i].Paths)
		out[i].Targets = slices.Clone(out[i].Targets)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// LookupParam finds a search parameter of a type by code.
func LookupParam(resourceType, code string) (SearchParam, bool) {
	for _, p := range SearchParams(resourceType) {
		if p.Code == code {
			return p, true
		}
	}
	return SearchParam{}, false
}
