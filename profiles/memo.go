package profiles

import (
	"encoding/binary"
	"slices"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// SourceMemo remembers, for the resources of one source's answer, the
// issues our profiles' JSON Schemas found, by what decides them: the
// resource's type and meta.profile (which profiles apply) and the JSON of
// the top-level members the profiles can see. The resources of an answer
// are about one patient, and a profile sees few of their members (our
// MedicationDispense profile sees its subject, which a source writes the
// same way each time): a resource whose members are the memo's skips
// building their Doc and the schemas. The issues are a function of those
// members' values, so they are the same (TestSourceMemo).
//
// A SourceMemo lives as long as the answer it serves: it keeps no resource
// longer than the answer does. It is not safe for concurrent use: each
// goroutine checking resources uses its own. Its zero value is empty.
type SourceMemo struct {
	issues map[string][]fhir.Issue
}

// Bounds of a SourceMemo: an answer whose resources differ in what the
// profiles see gains nothing, and the memo stops growing.
const (
	maxMemoEntries = 32
	maxMemoKey     = 4096 // bytes
)

// remember keeps the schemas' issues of the resource with key.
func (m *SourceMemo) remember(key []byte, issues []fhir.Issue) {
	if len(key) > maxMemoKey || len(m.issues) >= maxMemoEntries {
		return
	}
	if m.issues == nil {
		m.issues = map[string][]fhir.Issue{}
	}
	m.issues[string(key)] = cloneIssues(issues)
}

// memoKey writes into key the memo key of a resource from a source of
// type rt (not a Bundle, whose entries the profile step reads too) with
// meta.profile profiles and top-level members ms: each part as its length
// and its bytes, the members those keepMember keeps.
func (v *Validator) memoKey(key []byte, rt string, profiles []string, ms []fhir.Member) []byte {
	key = appendPart(key[:0], rt)
	key = binary.AppendUvarint(key, uint64(len(profiles)))
	for _, p := range profiles {
		key = appendPart(key, p)
	}
	for _, m := range ms {
		if m.Key != "resourceType" && v.keepMember(rt, m.Key) {
			key = appendPart(appendPart(key, m.Key), string(m.Value))
		}
	}
	return key
}

// appendPart appends s's length and s.
func appendPart(key []byte, s string) []byte {
	return append(binary.AppendUvarint(key, uint64(len(s))), s...)
}

// lookUp looks the resource visitResource visits up in w.memo, by its
// members ms: w.hit tells it was there, with issues w.cached (and then
// w.keep keeps no member: the Doc is not read).
func (w *treeChecker) lookUp(ms []fhir.Member) {
	w.key = w.v.memoKey(w.key, w.root, w.profiles, ms)
	w.keyed = true
	w.cached, w.hit = w.memo.issues[string(w.key)]
}

// keepMember is the keep of ValidateSome for a resource from a source:
// Validator.keepMember's, or none when the memo holds the schemas' issues.
func (w *treeChecker) keepMember(rt, key string) bool {
	return !w.hit && w.v.keepMember(rt, key)
}

// cloneIssues copies issues, their expressions too: a caller may change
// what it is given.
func cloneIssues(issues []fhir.Issue) []fhir.Issue {
	if len(issues) == 0 {
		return nil
	}
	out := slices.Clone(issues)
	for i := range out {
		out[i].Expression = slices.Clone(out[i].Expression)
	}
	return out
}
