// Package audit records every access as a FHIR AuditEvent (IHE BALP
// shapes): built from what the edge and federation report, chained by hash
// so that editing or removing a stored event is detected, and written
// durably in batches before any data leaves. It never sees medical
// content: only who asked what about whom, and with what result.
package audit

import (
	"encoding/base64"
	"strconv"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Outcome codes of AuditEvent.outcome.
const (
	OutcomeSuccess      = "0"
	OutcomeMinorFailure = "4"  // the request failed: 4xx
	OutcomeSeriousFail  = "8"  // the server or a dependency failed: 5xx
	OutcomeMajorFailure = "12" // not used for requests
)

// OutcomeOf maps an HTTP status to an AuditEvent outcome.
func OutcomeOf(status int) string {
	switch {
	case status < 400:
		return OutcomeSuccess
	case status < 500:
		return OutcomeMinorFailure
	default:
		return OutcomeSeriousFail
	}
}

// Agent is who asked: the UZI identity of the client certificate, or the
// patient of a bearer token.
type Agent struct {
	UZINumber string
	CardType  string
	Role      string
	URA       string
	AGB       string
	Name      string // certificate subject
	BSN       string // a patient acting for themselves
	Address   string // network address
	System    string // the switching point itself (a background job)
}

// Source is one source system asked in a federated query.
type Source struct {
	URA     string
	Name    string
	URL     string
	Count   int
	Outcome string // ok, or what went wrong (timeout, invalid, ...)
}

// Event is one interaction to record.
type Event struct {
	ID          string
	Recorded    time.Time
	Interaction string // read, vread, search-type, create, update, delete, history-*, capabilities, or an operation such as $summary
	Action      string // C R U D E
	Status      int    // HTTP status of the answer
	Description string // outcomeDesc: why it failed (never medical content)
	Agent       *Agent // nil when the client had no usable identity
	PatientBSN  string
	Query       string // the query string as sent (it may hold a BSN: it belongs in the audit)
	Resources   []string
	Category    string // data category (LOINC) of patient data
	Sources     []Source
	Permit      *bool
	Reasons     []string
	Observer    string // the switching point's name or URL
}

// ActionOf maps an interaction to AuditEvent.action, as IHE BALP does:
// a read is R, a search (and a further page of one) a query, E.
func ActionOf(interaction string) string {
	switch interaction {
	case "create":
		return "C"
	case "read", "vread", "history-instance", "history-type", "capabilities":
		return "R"
	case "update":
		return "U"
	case "delete":
		return "D"
	}
	return "E"
}

// System URLs of the AuditEvent vocabulary.
const (
	systemAuditType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	systemInteraction = "http://hl7.org/fhir/restful-interaction"
	systemActReason   = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	systemPartType    = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	systemEntityType  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole  = "http://terminology.hl7.org/CodeSystem/object-role"
	systemSourceType  = "http://terminology.hl7.org/CodeSystem/security-source-type"
	systemDetail      = "http://schakelpunt.nl/fhir/CodeSystem/audit-detail"
	// ChainExtension is the URL of the hash-chain link on each event.
	ChainExtension = "http://schakelpunt.nl/fhir/StructureDefinition/audit-chain"
	// InteractionExtension is the URL of the extension that keeps our own
	// name of the interaction (valueCoding in SystemInteraction) when it is
	// not itself a restful-interaction code: "$verify", "page", "unknown",
	// "retention". The subtype then carries the nearest restful-interaction
	// code (see SubtypeOf).
	InteractionExtension = "http://schakelpunt.nl/fhir/StructureDefinition/audit-interaction"
	// SystemInteraction is the code system of our interaction names.
	SystemInteraction = "http://schakelpunt.nl/fhir/CodeSystem/interaction"
	// systemClient identifies a client without a usable certificate by its
	// network address; systemComponent a part of the switching point that
	// acts on its own (retention).
	systemClient    = "http://schakelpunt.nl/fhir/NamingSystem/network-address"
	systemComponent = "http://schakelpunt.nl/fhir/NamingSystem/system-component"
)

// restfulInteractions are the codes of http://hl7.org/fhir/restful-interaction
// (R4) that our AuditEvent profile admits as subtype.
var restfulInteractions = map[string]bool{
	"read": true, "vread": true, "update": true, "patch": true, "delete": true,
	"history": true, "history-instance": true, "history-type": true, "history-system": true,
	"create": true, "search": true, "search-type": true, "search-system": true,
	"capabilities": true, "transaction": true, "batch": true, "operation": true,
}

// SubtypeOf maps an interaction name to the restful-interaction code of
// AuditEvent.subtype: the name itself when it is one; operation for an
// operation ("$summary") and for a request that matched no interaction
// ("unknown", ""); search for a further page of a search or history
// ("page"); delete for retention. ours reports whether the name is not
// itself the code, and is then kept in InteractionExtension.
func SubtypeOf(interaction string) (code string, ours bool) {
	switch {
	case restfulInteractions[interaction]:
		return interaction, false
	case interaction == "page":
		return "search", true
	case interaction == "retention":
		return "delete", true
	}
	return "operation", true
}

// The types of the AuditEvent list their fields in the order of their
// JSON names, so that encoding/json writes them with sorted keys: the
// canonical form of the chain (see Canonical) without decoding and
// re-encoding (see render).

type coding struct {
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
	System  string `json:"system,omitempty"`
}

type concept struct {
	Coding []coding `json:"coding"`
	Text   string   `json:"text,omitempty"`
}

type identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type reference struct {
	Display    string      `json:"display,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
}

type network struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type agent struct {
	Name      string    `json:"name,omitempty"`
	Network   *network  `json:"network,omitempty"`
	Requestor bool      `json:"requestor"`
	Role      []concept `json:"role,omitempty"`
	Type      *concept  `json:"type,omitempty"`
	Who       reference `json:"who"`
}

type detail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

type entity struct {
	Description string     `json:"description,omitempty"`
	Detail      []detail   `json:"detail,omitempty"`
	Name        string     `json:"name,omitempty"`
	Query       string     `json:"query,omitempty"`
	Role        *coding    `json:"role,omitempty"`
	Type        *coding    `json:"type,omitempty"`
	What        *reference `json:"what,omitempty"`
}

type source struct {
	Observer reference `json:"observer"`
	Site     string    `json:"site,omitempty"`
	Type     []coding  `json:"type"`
}

type extension struct {
	Extension   []extension `json:"extension,omitempty"`
	URL         string      `json:"url"`
	ValueCoding *coding     `json:"valueCoding,omitempty"`
	ValueString string      `json:"valueString,omitempty"`
}

// auditEvent is an AuditEvent without its chain link, in the order of its
// keys. The members between extension, id and resourceType are grouped
// (eventA, eventB, eventC) so that render can marshal them apart and put
// them together in both orders: canonical, and stored (resourceType, id
// and the extensions, chain link first, at the front).
type auditEvent struct {
	eventA
	Extension []extension `json:"extension,omitempty"`
	ID        string      `json:"id"`
	eventB
	ResourceType string `json:"resourceType"`
	eventC
}

type eventA struct {
	Action string   `json:"action"`
	Agent  []agent  `json:"agent"`
	Entity []entity `json:"entity,omitempty"`
}

type eventB struct {
	Outcome        string    `json:"outcome"`
	OutcomeDesc    string    `json:"outcomeDesc,omitempty"`
	PurposeOfEvent []concept `json:"purposeOfEvent,omitempty"`
	Recorded       string    `json:"recorded"`
}

type eventC struct {
	Source  source   `json:"source"`
	Subtype []coding `json:"subtype"`
	Type    coding   `json:"type"`
}

// build renders the event as an AuditEvent without its chain link.
func (e *Event) build() auditEvent {
	interaction := e.Interaction
	if interaction == "" {
		interaction = "unknown"
	}
	observer := e.Observer
	if observer == "" {
		observer = "Schakelpunt"
	}
	code, ours := SubtypeOf(interaction)
	ae := auditEvent{
		ResourceType: "AuditEvent",
		ID:           e.ID,
		eventA:       eventA{Action: e.Action},
		eventB: eventB{
			Recorded:    fhir.FormatInstant(e.Recorded),
			Outcome:     OutcomeOf(e.Status),
			OutcomeDesc: e.Description,
		},
		eventC: eventC{
			Type:    coding{System: systemAuditType, Code: "rest", Display: "RESTful Operation"},
			Subtype: []coding{{System: systemInteraction, Code: code}},
			Source: source{
				Site:     "Schakelpunt",
				Observer: reference{Display: observer},
				Type:     []coding{{System: systemSourceType, Code: "4", Display: "Application Server"}},
			},
		},
	}
	if ours {
		ae.Extension = append(ae.Extension, extension{URL: InteractionExtension, ValueCoding: &coding{System: SystemInteraction, Code: interaction}})
	}
	if ae.Action == "" {
		ae.Action = ActionOf(interaction)
	}
	switch {
	case e.Agent != nil && e.Agent.BSN != "":
		// A patient looking at their own data (the patient listener).
		ae.PurposeOfEvent = []concept{{Coding: []coding{{System: systemActReason, Code: "PATRQT", Display: "patient requested"}}}}
	case e.PatientBSN != "":
		ae.PurposeOfEvent = []concept{{Coding: []coding{{System: systemActReason, Code: "TREAT", Display: "treatment"}}}}
	}
	ae.Agent = e.agents()
	if e.PatientBSN != "" {
		ae.Entity = append(ae.Entity, entity{
			What: &reference{Type: "Patient", Identifier: &identifier{System: fhir.SystemBSN, Value: e.PatientBSN}},
			Type: &coding{System: systemEntityType, Code: "1", Display: "Person"},
			Role: &coding{System: systemObjectRole, Code: "1", Display: "Patient"},
		})
	}
	if e.Query != "" {
		ae.Entity = append(ae.Entity, entity{
			Type:  &coding{System: systemEntityType, Code: "2", Display: "System Object"},
			Role:  &coding{System: systemObjectRole, Code: "24", Display: "Query"},
			Query: base64.StdEncoding.EncodeToString([]byte(e.Query)),
		})
	}
	for _, r := range e.Resources {
		if r == "" {
			continue
		}
		ae.Entity = append(ae.Entity, entity{
			What: &reference{Reference: r},
			Type: &coding{System: systemEntityType, Code: "2", Display: "System Object"},
			Role: &coding{System: systemObjectRole, Code: "4", Display: "Domain Resource"},
		})
	}
	for _, s := range e.Sources {
		src := entity{
			What:        &reference{Type: "Organization", Display: s.Name},
			Type:        &coding{System: systemEntityType, Code: "2", Display: "System Object"},
			Role:        &coding{System: systemObjectRole, Code: "13", Display: "Security Resource"},
			Description: s.URL,
			Detail:      []detail{{Type: "result-count", ValueString: strconv.Itoa(s.Count)}},
		}
		if s.URA != "" {
			src.What.Identifier = &identifier{System: fhir.SystemURA, Value: s.URA}
		}
		if s.Outcome != "" {
			src.Detail = append(src.Detail, detail{Type: "result", ValueString: s.Outcome})
		}
		ae.Entity = append(ae.Entity, src)
	}
	if e.Permit != nil || e.Category != "" {
		d := entity{
			Type:        &coding{System: systemEntityType, Code: "4", Display: "Other"},
			Role:        &coding{System: systemObjectRole, Code: "13", Display: "Security Resource"},
			Name:        "access decision",
			Description: "the policy and consent decision for this request",
		}
		if e.Permit != nil {
			v := "deny"
			if *e.Permit {
				v = "permit"
			}
			d.Detail = append(d.Detail, detail{Type: "decision", ValueString: v})
		}
		for _, r := range e.Reasons {
			if r == "" {
				continue
			}
			d.Detail = append(d.Detail, detail{Type: "reason", ValueString: r})
		}
		if e.Category != "" {
			d.Detail = append(d.Detail, detail{Type: "category", ValueString: fhir.SystemLOINC + "|" + e.Category})
		}
		ae.Entity = append(ae.Entity, d)
	}
	return ae
}

func (e *Event) agents() []agent {
	a := e.Agent
	if a != nil && a.System != "" {
		return []agent{{
			Type:      &concept{Coding: []coding{{System: "http://dicom.nema.org/resources/ontology/DCM", Code: "110150", Display: "Application"}}},
			Who:       reference{Identifier: &identifier{System: systemComponent, Value: a.System}, Display: a.System},
			Requestor: true,
		}}
	}
	if a == nil || (a.UZINumber == "" && a.BSN == "") {
		// No usable identity: the network address is all we know (the
		// profile wants an identifier on every agent).
		addr := ""
		if a != nil {
			addr = a.Address
		}
		value := addr
		if value == "" {
			value = "unknown"
		}
		return []agent{{
			Type:      &concept{Coding: []coding{{System: systemPartType, Code: "IRCP", Display: "information recipient"}}},
			Who:       reference{Identifier: &identifier{System: systemClient, Value: value}, Display: "unidentified client"},
			Requestor: true,
			Network:   netOf(addr),
		}}
	}
	if a.BSN != "" {
		return []agent{{
			Type:      &concept{Coding: []coding{{System: systemPartType, Code: "IRCP", Display: "information recipient"}}},
			Who:       reference{Type: "Patient", Identifier: &identifier{System: fhir.SystemBSN, Value: a.BSN}},
			Requestor: true,
			Network:   netOf(a.Address),
		}}
	}
	system := fhir.SystemUZIPerson
	if a.CardType == "S" {
		system = fhir.SystemUZISystem
	}
	person := agent{
		Type:      &concept{Coding: []coding{{System: systemPartType, Code: "IRCP", Display: "information recipient"}}},
		Who:       reference{Identifier: &identifier{System: system, Value: a.UZINumber}, Display: a.Name},
		Requestor: true,
		Network:   netOf(a.Address),
	}
	if a.Role != "" {
		role := concept{Coding: []coding{{System: fhir.SystemUZIRole, Code: a.Role}}}
		if a.CardType != "" {
			role.Text = "UZI card " + a.CardType
		}
		person.Role = append(person.Role, role)
	}
	if a.AGB != "" && a.AGB != "00000000" {
		person.Role = append(person.Role, concept{Coding: []coding{{System: fhir.SystemAGB, Code: a.AGB}}})
	}
	if a.URA == "" {
		return []agent{person}
	}
	org := agent{
		Type:      &concept{Coding: []coding{{System: systemPartType, Code: "PROV", Display: "healthcare provider"}}},
		Who:       reference{Type: "Organization", Identifier: &identifier{System: fhir.SystemURA, Value: a.URA}},
		Requestor: false,
	}
	return []agent{person, org}
}

func netOf(addr string) *network {
	if addr == "" {
		return nil
	}
	return &network{Address: addr, Type: "2"} // IP address
}
