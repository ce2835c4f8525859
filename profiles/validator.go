package profiles

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Parser does base R4 validation; *fhir.Codec is one. A body it accepts
// must be one JSON object (the invariants read its bytes).
type Parser interface {
	Parse(body []byte, wantType string) (*fhir.Resource, error)
}

// BaseValidator is a Parser that also does base R4 validation without
// google/fhir's protos, with the same verdicts, much faster (*fhir.Codec is
// one). When the Parser given to New is one, resources from sources are
// validated with it: with ValidateSome, which decodes only the top-level
// members that keep accepts into the Resource's Doc (and always
// "resourceType"), for the verdict of Validate, and hands a resource that
// passed, with its members, to visit: the invariants and meta.profile are
// read there without decoding it again, and a SourceMemo is consulted
// before keep is asked.
type BaseValidator interface {
	Validate(body []byte, wantType string) (*fhir.Resource, error)
	ValidateSome(body []byte, wantType string, keep func(resourceType, key string) bool, visit func(fhir.Node, []fhir.Member)) (*fhir.Resource, error)
}

// Validator validates resources against the R4 base and our profiles. It is
// built once at start (New compiles every profile) and is safe for
// concurrent use.
type Validator struct {
	parser   Parser
	base     BaseValidator       // nil if parser is none
	profiles map[string]*profile // by canonical URL
	defs     []Definition        // sorted by URL
	notes    map[string]note     // schema location → the constraint it checks
	// observed is, by resource type, the top-level members that our
	// profiles of that type can see (observe.go); keep is keepMember.
	observed map[string]*observed
	keep     func(resourceType, key string) bool
}

type profile struct {
	url, version, typ string
	schema            *jsonschema.Schema
}

// maxBundleDepth bounds the Bundles within Bundles whose entries are
// validated against their own profiles.
const maxBundleDepth = 4

// New loads our StructureDefinitions, generates a JSON Schema for each and
// compiles them: one schema per profile.
func New(p Parser) (*Validator, error) {
	if p == nil {
		return nil, fmt.Errorf("profiles: no parser")
	}
	sds, valueSets, err := loadDefinitions()
	if err != nil {
		return nil, err
	}
	v := &Validator{parser: p, profiles: map[string]*profile{}, notes: map[string]note{}, observed: map[string]*observed{}}
	v.base, _ = p.(BaseValidator)
	v.keep = v.keepMember
	known := map[string]bool{}
	for _, sd := range sds {
		known[sd.URL] = true
	}
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	c.LoadURL = func(s string) (io.ReadCloser, error) {
		return nil, fmt.Errorf("profiles: schema %s is not one of ours", s)
	}
	schemas := map[string]map[string]any{}
	for _, sd := range sds {
		schema, err := generate(sd, valueSets, known, v.notes)
		if err != nil {
			return nil, fmt.Errorf("profiles: generate schema for %s: %w", sd.URL, err)
		}
		schemas[sd.URL] = schema
		b, err := json.Marshal(schema)
		if err != nil {
			return nil, fmt.Errorf("profiles: encode schema for %s: %w", sd.URL, err)
		}
		if err := c.AddResource(sd.URL, bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("profiles: add schema for %s: %w", sd.URL, err)
		}
	}
	for _, sd := range sds {
		names, patterns, all := observe(schemas[sd.URL], schemas)
		o := v.observed[sd.Type]
		if o == nil {
			o = &observed{}
			v.observed[sd.Type] = o
		}
		if err := o.add(names, patterns, all); err != nil {
			return nil, fmt.Errorf("profiles: schema for %s: %w", sd.URL, err)
		}
		s, err := c.Compile(sd.URL)
		if err != nil {
			return nil, fmt.Errorf("profiles: compile schema for %s: %w", sd.URL, err)
		}
		v.profiles[sd.URL] = &profile{url: sd.URL, version: sd.Version, typ: sd.Type, schema: s}
		v.defs = append(v.defs, definitionOf(sd))
	}
	return v, nil
}

// StructureDefinitions returns our profiles with their JSON, sorted by URL,
// for StructureDefinition read and search and the CapabilityStatement's
// supportedProfile.
func (v *Validator) StructureDefinitions() []Definition {
	out := make([]Definition, len(v.defs))
	for i, d := range v.defs {
		d.JSON = bytes.Clone(d.JSON)
		out[i] = d
	}
	return out
}

// keepNone keeps no member: a base check whose Doc is not read.
func keepNone(string, string) bool { return false }

// keepMember reports whether run can look at the top-level member key of
// a resource of type rt from a source: the members our profiles of type
// rt can see, and every member of a Bundle (its entries are validated
// against the profiles of their types, and its type tells a document).
// meta, whose profile names the profiles to apply, run reads in the
// decoded tree ValidateSome hands to visit.
func (v *Validator) keepMember(rt, key string) bool {
	if rt == "Bundle" {
		return true
	}
	o := v.observed[rt]
	return o != nil && o.keeps(key)
}

// ProfileFor returns the profile that writes of resourceType must meet: the
// index Patient for Patient, our Consent for Consent; "" for other types.
func (v *Validator) ProfileFor(resourceType string) string {
	switch resourceType {
	case "Patient":
		return ProfileIndexPatient
	case "Consent":
		return ProfileConsent
	}
	return ""
}

// sourceProfile is the profile a resource returned by a source must meet.
func sourceProfile(doc map[string]any) string {
	switch doc["resourceType"] {
	case "MedicationDispense":
		return ProfileMedicationDispense
	case "Bundle":
		if doc["type"] == "document" {
			return ProfileSummaryBundle
		}
	}
	return ""
}

// HasErrors reports whether any issue is an error or fatal.
func HasErrors(issues []fhir.Issue) bool {
	for _, is := range issues {
		if is.Severity == "error" || is.Severity == "fatal" {
			return true
		}
	}
	return false
}

// Validate validates body against the R4 base and against the profile at
// profileURL ("" for none) and every profile its meta.profile names. A
// profile we do not know, named either way, is an error issue with code
// not-supported (a 422 for writes). Bundle entries are also validated
// against the profiles their own meta.profile names (an unknown one there is
// a warning). The issues are sorted by expression; none means valid.
func (v *Validator) Validate(ctx context.Context, body []byte, profileURL string) []fhir.Issue {
	_, issues, _, _ := v.run(ctx, body, profileURL, false, nil)
	return issues
}

// ValidateSourceResource validates a resource a source returned, before it
// is merged into a federated answer: the R4 base; a MedicationDispense
// against our MedicationDispense profile, a document Bundle against the
// summary profile; the entries of any Bundle against the profile for their
// type. Profiles the source's meta.profile names are applied when they are
// ours and ignored otherwise (sources claim national profiles we do not
// hold). To drop only the invalid entries of a searchset, validate each
// entry's resource on its own. Base validation is the Parser's
// BaseValidator when it has one, which decodes, for the profile step, only
// the top-level members our profiles can see (all of a Bundle's); the
// invariants read its decoded tree (the JSON of a resource that failed
// base validation).
func (v *Validator) ValidateSourceResource(ctx context.Context, body []byte) []fhir.Issue {
	_, issues, _, _ := v.run(ctx, body, "", true, nil)
	return issues
}

// ValidateSourceMembers is ValidateSourceResource that also returns the
// resource's top-level members, as fhir.Members splits them, from the
// base validator's own decoding: federation reads a kept resource's
// identity and sets its meta.source from them without splitting it again.
// members is nil when the base validation did not split the resource (a
// Parser without BaseValidator, or a resource that failed it). memo, when
// not nil, is the SourceMemo of the answer the resource is part of.
func (v *Validator) ValidateSourceMembers(ctx context.Context, body []byte, memo *SourceMemo) (members []fhir.Member, issues []fhir.Issue) {
	res, issues, _, _ := v.run(ctx, body, "", true, memo)
	if res != nil {
		members = res.Members
	}
	return members, issues
}

// Check validates a resource to be written (profileURL as for Validate,
// usually ProfileFor its type) and returns it parsed. On failure the error
// is a *fhir.Error: KindInvalid (400) when the body is not a well-formed R4
// resource, KindUnprocessable (422) when it fails validation, each with
// issues for the OperationOutcome.
func (v *Validator) Check(ctx context.Context, body []byte, profileURL string) (*fhir.Resource, error) {
	res, issues, kind, err := v.run(ctx, body, profileURL, false, nil)
	if err != nil {
		return nil, fmt.Errorf("profiles: validate: %w", err)
	}
	if !HasErrors(issues) {
		return res, nil
	}
	return nil, &fhir.Error{Kind: kind, Issues: issues}
}

// run validates body and returns the parsed resource (nil if base
// validation failed; for source data its Doc holds only the members
// keepMember keeps), the issues, and the kind of error they amount to. err
// is set, with an issue saying so, when validation could not be done: ctx
// ended or the parser failed unexpectedly. memo (source data only, may be
// nil) remembers the schemas' issues across the resources of an answer
// (memo.go).
func (v *Validator) run(ctx context.Context, body []byte, profileURL string, source bool, memo *SourceMemo) (*fhir.Resource, []fhir.Issue, fhir.Kind, error) {
	if err := ctx.Err(); err != nil {
		return nil, []fhir.Issue{{Severity: "error", Code: "timeout", Diagnostics: "validation was cancelled"}}, fhir.KindUnavailable, err
	}
	kind := fhir.KindUnprocessable
	var issues []fhir.Issue
	var res *fhir.Resource
	var err error
	// A resource that passes the base walk has its invariants checked in
	// the walk's decoded tree, which it hands to tree.visit; any other, in
	// its JSON (below).
	tree := getTreeChecker()
	defer tree.release()
	tree.v, tree.memo = v, memo
	if source && v.base != nil {
		res, err = v.base.ValidateSome(body, "", tree.keep, tree.visit)
	} else {
		res, err = v.parser.Parse(body, "")
		if err == nil && v.base != nil {
			// The base walk's deliberate differences (fhir/base.go) hold
			// for writes too: it validates contained resources, which
			// google/fhir's validation pass does not enter.
			if _, berr := v.base.ValidateSome(body, "", keepNone, tree.visit); berr != nil {
				res, err = nil, berr
			}
		}
	}
	var doc map[string]any
	raw := body // the resource's JSON, for the invariants
	if err != nil {
		fe := fhir.AsError(err)
		issues = append(issues, fe.Issues...)
		kind = fe.Kind
		if kind != fhir.KindInvalid && kind != fhir.KindUnprocessable {
			return nil, issues, kind, err
		}
		// Report the profile's findings too, when there is a resource to
		// look at.
		if doc, raw = decodeResource(body); doc == nil {
			return nil, issues, kind, nil
		}
		res = nil
	} else {
		doc = res.Doc
	}
	rt, _ := doc["resourceType"].(string)

	var applyBuf, seenBuf [4]*profile        // a few profiles are named
	apply, seen := applyBuf[:0], seenBuf[:0] // a profile is used once
	use := func(url string, unknown func()) {
		p := v.lookup(url)
		if p == nil {
			unknown()
			return
		}
		if slices.Contains(seen, p) {
			return
		}
		seen = append(seen, p)
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
	named := tree.profiles // read while visiting the tree
	if !tree.visited {
		named = metaProfiles(doc)
	}
	for i, u := range named {
		use(u, func() {
			if !source {
				issues = append(issues, fhir.Issue{Severity: "error", Code: "not-supported",
					Diagnostics: fmt.Sprintf("meta.profile names profile %s, which is not known to this server", u),
					Expression:  []string{rt + ".meta.profile[" + strconv.Itoa(i) + "]"}})
			}
		})
	}
	if tree.hit { // the Doc holds resourceType only
		issues = append(issues, cloneIssues(tree.cached)...)
	} else {
		from := len(issues)
		for _, p := range apply {
			issues = v.schemaIssues(p.schema, doc, rt, "", issues)
		}
		if tree.keyed {
			memo.remember(tree.key, issues[from:])
		}
	}
	if rt == "Bundle" {
		issues = v.entries(ctx, doc, rt, "", source, 1, issues)
	}
	if tree.visited {
		issues = append(issues, tree.issues...)
	} else {
		issues = append(issues, invariants(raw, rt)...)
	}
	if err := ctx.Err(); err != nil {
		return nil, append(issues, fhir.Issue{Severity: "error", Code: "timeout", Diagnostics: "validation was cancelled"}), fhir.KindUnavailable, err
	}
	return res, tidy(issues), kind, nil
}

// entries validates each entry of a Bundle against the profiles of its own
// type: those its meta.profile names, and for source data the source
// profile of its type.
func (v *Validator) entries(ctx context.Context, bundle map[string]any, root, prefix string, source bool, depth int, issues []fhir.Issue) []fhir.Issue {
	list, _ := bundle["entry"].([]any)
	for i, e := range list {
		if ctx.Err() != nil {
			return issues
		}
		entry, _ := e.(map[string]any)
		res, _ := entry["resource"].(map[string]any)
		if res == nil {
			continue
		}
		rt, _ := res["resourceType"].(string)
		at := prefix + "/entry/" + strconv.Itoa(i) + "/resource"
		var urls []string
		if source {
			if u := sourceProfile(res); u != "" {
				urls = append(urls, u)
			}
		}
		for j, u := range metaProfiles(res) {
			if v.lookup(u) != nil {
				urls = append(urls, u)
			} else if !source {
				issues = append(issues, fhir.Issue{Severity: "warning", Code: "not-supported",
					Diagnostics: fmt.Sprintf("meta.profile names profile %s, which is not known to this server: the entry was validated against the base only", u),
					Expression:  []string{fhirPath(root, at) + ".meta.profile[" + strconv.Itoa(j) + "]"}})
			}
		}
		seen := map[string]bool{}
		for _, u := range urls {
			p := v.lookup(u)
			if seen[p.url] {
				continue
			}
			seen[p.url] = true
			if p.typ != rt {
				issues = append(issues, fhir.Issue{Severity: "error", Code: "processing",
					Diagnostics: fmt.Sprintf("profile %s constrains %s, not %s", p.url, p.typ, rt),
					Expression:  []string{fhirPath(root, at)}})
				continue
			}
			issues = v.schemaIssues(p.schema, res, root, at, issues)
		}
		if rt == "Bundle" && depth < maxBundleDepth {
			issues = v.entries(ctx, res, root, at, source, depth+1, issues)
		}
	}
	return issues
}

// lookup finds a profile by canonical URL, with an optional |version that
// must match ours.
func (v *Validator) lookup(canonical string) *profile {
	url, version, versioned := strings.Cut(canonical, "|")
	p := v.profiles[url]
	if p == nil || (versioned && version != p.version) {
		return nil
	}
	return p
}

// metaProfiles returns the strings in meta.profile.
func metaProfiles(doc map[string]any) []string {
	meta, _ := doc["meta"].(map[string]any)
	list, _ := meta["profile"].([]any)
	out := make([]string, 0, len(list))
	for _, p := range list {
		if s, ok := p.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// decodeResource decodes the JSON object with a resourceType that body
// starts with, and returns it with its JSON; nil if there is none.
func decodeResource(body []byte) (map[string]any, []byte) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, nil
	}
	if _, ok := doc["resourceType"].(string); !ok {
		return nil, nil
	}
	return doc, body[:dec.InputOffset()]
}

// tidy sorts issues by expression and drops duplicates.
func tidy(issues []fhir.Issue) []fhir.Issue {
	if len(issues) < 2 {
		return issues
	}
	key := func(is fhir.Issue) string {
		return strings.Join(is.Expression, ",") + "\x00" + is.Severity + "\x00" + is.Code + "\x00" + is.Diagnostics
	}
	sort.SliceStable(issues, func(i, j int) bool { return key(issues[i]) < key(issues[j]) })
	out := issues[:1]
	for _, is := range issues[1:] {
		if key(is) != key(out[len(out)-1]) {
			out = append(out, is)
		}
	}
	return out
}
