package profiles

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// The canonical URLs of our profiles.
const (
	ProfileIndexPatient       = "http://schakelpunt.nl/fhir/StructureDefinition/sp-index-patient"
	ProfileConsent            = "http://schakelpunt.nl/fhir/StructureDefinition/sp-consent"
	ProfileAuditEvent         = "http://schakelpunt.nl/fhir/StructureDefinition/sp-auditevent"
	ProfileMedicationDispense = "http://schakelpunt.nl/fhir/StructureDefinition/sp-medicationdispense"
	ProfileSummaryBundle      = "http://schakelpunt.nl/fhir/StructureDefinition/sp-summary-bundle"
	ProfileSummaryComposition = "http://schakelpunt.nl/fhir/StructureDefinition/sp-summary-composition"
)

//go:embed definitions/*.json
var definitionFiles embed.FS

// Definition is one of our StructureDefinitions: its identity and its JSON as
// written in definitions/.
type Definition struct {
	URL     string
	Version string
	Name    string
	Type    string // the resource type it constrains
	JSON    []byte
}

// structureDefinition is the part of a StructureDefinition the generator reads.
type structureDefinition struct {
	ResourceType   string            `json:"resourceType"`
	ID             string            `json:"id"`
	URL            string            `json:"url"`
	Version        string            `json:"version"`
	Name           string            `json:"name"`
	Status         string            `json:"status"`
	Kind           string            `json:"kind"`
	Type           string            `json:"type"`
	BaseDefinition string            `json:"baseDefinition"`
	Derivation     string            `json:"derivation"`
	Contained      []json.RawMessage `json:"contained"`
	Differential   struct {
		Element []json.RawMessage `json:"element"`
	} `json:"differential"`

	elements []*elementDefinition
	raw      []byte
}

// elementDefinition is the part of an ElementDefinition the generator reads.
type elementDefinition struct {
	ID         string `json:"id"`
	Path       string `json:"path"`
	SliceName  string `json:"sliceName"`
	Short      string `json:"short"`
	Definition string `json:"definition"`
	Min        *int   `json:"min"`
	Max        string `json:"max"`
	Base       *struct {
		Path string `json:"path"`
		Min  int    `json:"min"`
		Max  string `json:"max"`
	} `json:"base"`
	ContentReference string        `json:"contentReference"`
	Type             []elementType `json:"type"`
	MaxLength        *int          `json:"maxLength"`
	Slicing          *struct {
		Discriminator []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"discriminator"`
		Ordered bool   `json:"ordered"`
		Rules   string `json:"rules"`
	} `json:"slicing"`
	Binding *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
	Constraint []struct {
		Key      string `json:"key"`
		Severity string `json:"severity"`
		Human    string `json:"human"`
	} `json:"constraint"`

	fixed, pattern any // decoded fixed[x] / pattern[x] values, nil when absent
}

type elementType struct {
	Code          string   `json:"code"`
	Profile       []string `json:"profile"`
	TargetProfile []string `json:"targetProfile"`
	Extension     []struct {
		URL         string `json:"url"`
		ValueString string `json:"valueString"`
	} `json:"extension"`
}

const extRegex = "http://hl7.org/fhir/StructureDefinition/regex"

// regex returns the regex extension of the type, if any.
func (t elementType) regex() string {
	for _, e := range t.Extension {
		if e.URL == extRegex {
			return e.ValueString
		}
	}
	return ""
}

// valueSet is a contained ValueSet: its codes by system.
type valueSet struct {
	URL     string
	Include []valueSetInclude
}

type valueSetInclude struct {
	System string
	Codes  []string
}

// loadDefinitions reads and decodes the embedded StructureDefinitions, sorted
// by URL, and the ValueSets they contain.
func loadDefinitions() ([]*structureDefinition, map[string]*valueSet, error) {
	files, err := fs.Glob(definitionFiles, "definitions/*.json")
	if err != nil {
		return nil, nil, fmt.Errorf("profiles: list definitions: %w", err)
	}
	var sds []*structureDefinition
	valueSets := map[string]*valueSet{}
	for _, name := range files {
		raw, err := definitionFiles.ReadFile(name)
		if err != nil {
			return nil, nil, fmt.Errorf("profiles: read %s: %w", name, err)
		}
		sd, vss, err := decodeDefinition(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("profiles: %s: %w", path.Base(name), err)
		}
		for _, vs := range vss {
			if _, dup := valueSets[vs.URL]; dup {
				return nil, nil, fmt.Errorf("profiles: %s: value set %s defined twice", path.Base(name), vs.URL)
			}
			valueSets[vs.URL] = vs
		}
		sds = append(sds, sd)
	}
	sort.Slice(sds, func(i, j int) bool { return sds[i].URL < sds[j].URL })
	for i := 1; i < len(sds); i++ {
		if sds[i].URL == sds[i-1].URL {
			return nil, nil, fmt.Errorf("profiles: profile %s defined twice", sds[i].URL)
		}
	}
	return sds, valueSets, nil
}

// decodeDefinition decodes one StructureDefinition and its contained
// ValueSets.
func decodeDefinition(raw []byte) (*structureDefinition, []*valueSet, error) {
	sd := &structureDefinition{raw: raw}
	if err := json.Unmarshal(raw, sd); err != nil {
		return nil, nil, fmt.Errorf("decode StructureDefinition: %w", err)
	}
	switch {
	case sd.ResourceType != "StructureDefinition":
		return nil, nil, fmt.Errorf("resourceType is %q, want StructureDefinition", sd.ResourceType)
	case sd.URL == "" || sd.Version == "" || sd.Name == "" || sd.Status == "" || sd.Type == "":
		return nil, nil, fmt.Errorf("url, version, name, status and type are required")
	case sd.Derivation != "constraint" || sd.Kind != "resource":
		return nil, nil, fmt.Errorf("only resource profiles (kind resource, derivation constraint) are supported")
	case sd.BaseDefinition != "http://hl7.org/fhir/StructureDefinition/"+sd.Type:
		return nil, nil, fmt.Errorf("baseDefinition must be the R4 base of %s", sd.Type)
	}
	for i, rawEl := range sd.Differential.Element {
		el, err := decodeElement(rawEl)
		if err != nil {
			return nil, nil, fmt.Errorf("differential element %d: %w", i, err)
		}
		sd.elements = append(sd.elements, el)
	}
	var vss []*valueSet
	for _, rc := range sd.Contained {
		var vs struct {
			ResourceType string `json:"resourceType"`
			URL          string `json:"url"`
			Compose      struct {
				Include []struct {
					System  string `json:"system"`
					Concept []struct {
						Code string `json:"code"`
					} `json:"concept"`
				} `json:"include"`
			} `json:"compose"`
		}
		if err := json.Unmarshal(rc, &vs); err != nil {
			return nil, nil, fmt.Errorf("decode contained resource: %w", err)
		}
		if vs.ResourceType != "ValueSet" {
			continue
		}
		out := &valueSet{URL: vs.URL}
		for _, inc := range vs.Compose.Include {
			vi := valueSetInclude{System: inc.System}
			for _, c := range inc.Concept {
				vi.Codes = append(vi.Codes, c.Code)
			}
			if inc.System == "" || len(vi.Codes) == 0 {
				return nil, nil, fmt.Errorf("value set %s: each include needs a system and enumerated concepts", vs.URL)
			}
			out.Include = append(out.Include, vi)
		}
		vss = append(vss, out)
	}
	return sd, vss, nil
}

// decodeElement decodes an ElementDefinition, including its fixed[x] and
// pattern[x] values (numbers kept as json.Number).
func decodeElement(raw []byte) (*elementDefinition, error) {
	el := &elementDefinition{}
	if err := json.Unmarshal(raw, el); err != nil {
		return nil, fmt.Errorf("decode ElementDefinition: %w", err)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fmt.Errorf("decode ElementDefinition: %w", err)
	}
	for k, v := range members {
		var dst *any
		var kind string
		switch {
		case strings.HasPrefix(k, "fixed") && len(k) > len("fixed"):
			dst, kind = &el.fixed, "fixed"
		case strings.HasPrefix(k, "pattern") && len(k) > len("pattern"):
			dst, kind = &el.pattern, "pattern"
		default:
			continue
		}
		if *dst != nil {
			return nil, fmt.Errorf("%s: more than one %s[x] value", el.ID, kind)
		}
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			return nil, fmt.Errorf("%s: decode %s: %w", el.ID, k, err)
		}
	}
	if el.ID == "" || el.Path == "" {
		return nil, fmt.Errorf("element without id or path")
	}
	return el, nil
}

// definitionOf returns the public view of sd.
func definitionOf(sd *structureDefinition) Definition {
	return Definition{URL: sd.URL, Version: sd.Version, Name: sd.Name, Type: sd.Type, JSON: sd.raw}
}
