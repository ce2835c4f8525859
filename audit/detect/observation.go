package detect

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// Decision is the access decision an event records.
type Decision int8

// The decisions.
const (
	NoDecision Decision = iota // the event records none (a metadata read, a refused request)
	Permitted
	Denied
)

// Observation is what the rules need of one AuditEvent.
type Observation struct {
	ID       string // AuditEvent id
	At       time.Time
	UZI      string // the person's UZI number (card Z, N or M); empty for a source system or a patient
	Card     string // UZI card type, when known
	URA      string // the requester's organisation
	BSN      string // the patient the event is about
	Category string // LOINC data category of a patient-data query, empty otherwise
	Decision Decision
	Success  bool // outcome 0
}

// AboutPatient reports whether o is a request by a person of an
// organisation about a patient: a query for their data, and also a
// request refused before it got that far (a role without access to
// medication still names the patient), an index or consent request by
// an employee.
func (o *Observation) AboutPatient() bool {
	return o.BSN != "" && o.UZI != "" && o.URA != ""
}

// Query reports whether o is a query for a patient's data (a federated
// MedicationDispense search or $summary) by a person of an organisation.
func (o *Observation) Query() bool {
	return o.Category != "" && o.AboutPatient()
}

// Contact reports whether o shows a treatment relationship between its
// organisation and its patient, for the no-relationship rule: a
// successful, permitted query for the patient's data (Query). Reads and
// searches of the index, of consents or of the log ($ihe-pix, a Patient
// search by BSN, a Consent search) name the patient as well but show no
// relationship: anyone of the organisation can make one first. The
// other contact, the organisation's registration of the patient in the
// index, is asked of the index itself (Relations.Registered).
func (o *Observation) Contact() bool {
	return o.Query() && o.Decision == Permitted && o.Success
}

// FromEvent is the observation of an event as the Recorder stored it.
func FromEvent(ev *audit.Event) Observation {
	o := Observation{
		ID: ev.ID, At: ev.Recorded, BSN: ev.PatientBSN, Category: ev.Category,
		Success: audit.OutcomeOf(ev.Status) == audit.OutcomeSuccess,
	}
	if a := ev.Agent; a != nil && a.System == "" && a.BSN == "" && a.UZINumber != "" {
		o.URA, o.Card = a.URA, a.CardType
		if a.CardType != "S" {
			o.UZI = a.UZINumber
		}
	}
	if ev.Permit != nil {
		o.Decision = Denied
		if *ev.Permit {
			o.Decision = Permitted
		}
	}
	return o
}

// The parts of a stored AuditEvent that ParseAuditEvent reads.
type storedEvent struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Recorded     string `json:"recorded"`
	Outcome      string `json:"outcome"`
	Agent        []struct {
		Who struct {
			Type       string `json:"type"`
			Identifier *struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		} `json:"who"`
		Role []struct {
			Text string `json:"text"`
		} `json:"role"`
		Requestor bool `json:"requestor"`
	} `json:"agent"`
	Entity []struct {
		What *struct {
			Identifier *struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		} `json:"what"`
		Role *struct {
			Code string `json:"code"`
		} `json:"role"`
		Name   string `json:"name"`
		Detail []struct {
			Type        string `json:"type"`
			ValueString string `json:"valueString"`
		} `json:"detail"`
	} `json:"entity"`
}

// ParseAuditEvent reads the observation from a stored AuditEvent (the
// shapes package audit writes): for replaying and reporting on the log.
func ParseAuditEvent(body []byte) (Observation, error) {
	var ae storedEvent
	if err := json.Unmarshal(body, &ae); err != nil {
		return Observation{}, fmt.Errorf("detect: AuditEvent: %w", err)
	}
	if ae.ResourceType != "AuditEvent" {
		return Observation{}, fmt.Errorf("detect: a %s is not an AuditEvent", ae.ResourceType)
	}
	at, err := time.Parse(time.RFC3339Nano, ae.Recorded)
	if err != nil {
		return Observation{}, fmt.Errorf("detect: AuditEvent/%s recorded: %w", ae.ID, err)
	}
	o := Observation{ID: ae.ID, At: at, Success: ae.Outcome == audit.OutcomeSuccess}
	for _, a := range ae.Agent {
		id := a.Who.Identifier
		if id == nil {
			continue
		}
		switch {
		case a.Requestor && id.System == fhir.SystemUZIPerson:
			o.UZI = id.Value
			for _, r := range a.Role {
				if card, ok := strings.CutPrefix(r.Text, "UZI card "); ok {
					o.Card = card
				}
			}
		case a.Requestor && id.System == fhir.SystemUZISystem:
			o.Card = "S"
		case !a.Requestor && id.System == fhir.SystemURA:
			o.URA = id.Value
		}
	}
	for _, e := range ae.Entity {
		if e.What != nil && e.What.Identifier != nil && e.What.Identifier.System == fhir.SystemBSN && e.Role != nil && e.Role.Code == "1" {
			o.BSN = e.What.Identifier.Value
		}
		if e.Name != "access decision" {
			continue
		}
		for _, d := range e.Detail {
			switch d.Type {
			case "decision":
				o.Decision = Denied
				if d.ValueString == "permit" {
					o.Decision = Permitted
				}
			case "category":
				o.Category = strings.TrimPrefix(d.ValueString, fhir.SystemLOINC+"|")
			}
		}
	}
	return o, nil
}
