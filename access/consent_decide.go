package access

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// ConsentRequest is the question put to the patient's consents: may data
// of Category, held by Source, flow to the organisation of Requester at
// time At?
type ConsentRequest struct {
	// Requester asks; its URA is the recipient organisation (the IRCP of
	// a consent). The kind of requester (card type, role) is the role
	// policy's concern (Policy.Decide), not the consent's: our Consent
	// profile names recipients by organisation only.
	Requester Principal
	Category  string    // LOINC code: fhir.CategoryMedication or fhir.CategoryGPSummary
	Source    string    // URA of the custodian whose data would flow
	At        time.Time // the moment of the query
}

// maxConsentReasons bounds how many consents a decision explains; the
// rest are counted.
const maxConsentReasons = 8

// Reasons a request is refused before any consent is read.
const (
	reasonNoConsent       = "no consent recorded: without the patient's consent no data is shared (opt-in)"
	reasonNoCategory      = "the request names no data category"
	reasonNoSource        = "the request names no source organisation"
	reasonNoRecipient     = "the requester names no organisation (URA)"
	reasonUnreadableCodes = "a category in a code other than LOINC (read as every category)"
)

// DecideConsent decides whether the patient's consents let data of
// req.Category flow from req.Source to req.Requester's organisation at
// req.At. It is a pure function: the caller passes every consent of the
// one patient (the store selects them by BSN) and, when one of them fails
// ParseConsent, denies without calling it. The rules, after DESIGN.md
// sections 3 and 9:
//
//  1. Opt-in: without a consent that permits, no data.
//  2. Only an active consent is in force. Draft, proposed, rejected,
//     inactive and entered-in-error ones permit nothing and deny nothing.
//  3. Between consents of one organisation (Consent.organization) the one
//     with the latest dateTime is in force; the earlier ones are replaced
//     whatever they said. A later inactive or rejected consent withdraws,
//     a later deny consent overrides, a later permit replaces (also when
//     it covers less). Draft, proposed and entered-in-error consents are
//     not decisions and replace nothing. Consents with the same dateTime
//     are all in force, except that a permit tied with a withdrawal or a
//     deny consent is withdrawn. A consent that names several
//     organisations permits only while it is the latest of each, and its
//     deny provisions count while it is the latest of any.
//  4. A consent in force permits when its provision has type permit, its
//     period covers At, its codes include the category (no code: every
//     category), its CST actors include the source (none: any source) and
//     its IRCP actors include the recipient (none: any recipient). Nested
//     permit provisions neither grant nor restrict anything.
//  5. Every deny provision of a consent in force, the top one of a deny
//     consent and nested ones at any depth, excludes what it names: the
//     category in its codes (none: every category; a code that is not
//     LOINC: every category), the sources of its CST actors (none: every
//     source) and the recipients of its IRCP actors (none: every
//     recipient), during its period within the periods of the provisions
//     around it. It excludes this across organisations: a deny in any
//     consent in force wins over a permit in any other. Exceptions nested
//     under a deny are not honoured.
//
// The reasons name consents as Consent/<id> (or by their position, when
// the id holds a run of eight digits or more, which could be a URA or a
// BSN) and speak of "this source" and "this recipient", never a URA or a
// BSN. They are written for the AuditEvent, not for the requester, who
// may not learn which sources or consents exist. A permit has ScopeAll, so
// that Policy.Decide(...).And(DecideConsent(...)) keeps the policy's
// scope.
func DecideConsent(consents []Consent, req ConsentRequest) Decision {
	switch {
	case req.Category == "":
		return Decision{Reasons: []string{reasonNoCategory}}
	case req.Source == "":
		return Decision{Reasons: []string{reasonNoSource}}
	case req.Requester.URA == "":
		return Decision{Reasons: []string{reasonNoRecipient}}
	case len(consents) == 0:
		return Decision{Reasons: []string{reasonNoConsent}}
	}
	latest := latestByOrganisation(consents)
	order := newestFirst(consents)
	permit, denies, _ := scan(consents, &req, latest, order, false)
	if denies.n() == 0 && permit >= 0 {
		return Decision{Permit: true, Scope: ScopeAll, Reasons: []string{
			consentRef(consents, permit) + " permits " + categoryText(req.Category) + " from this source to this recipient",
		}}
	}
	// A denial: scan again, this time writing the reasons.
	_, denies, explain := scan(consents, &req, latest, order, true)
	if denies.n() > 0 {
		return Decision{Reasons: denies.list("consents exclude this")}
	}
	reasons := make([]string, 0, 2+len(explain.r))
	reasons = append(reasons, "no consent in force permits "+categoryText(req.Category)+" from this source to this recipient")
	return Decision{Reasons: append(reasons, explain.list("consents do not permit it")...)}
}

// scan reads the consents newest first and returns the newest that
// permits req (or -1) and the denies that apply; with reasons, it also
// writes the reasons of the denies and of the consents that do not
// permit, until a deny or a permit decides. Without, it only counts the
// denies.
func scan(consents []Consent, req *ConsentRequest, latest *latestTable, order []int, reasons bool) (permit int, denies, explain reasonList) {
	permit = -1
	for _, i := range order {
		c := &consents[i]
		if c.Status != ConsentActive {
			if reasons && explain.room() {
				explain.add(consentRef(consents, i) + " has status " + statusText(c.Status) + ": only an active consent is in force")
			}
			continue
		}
		forAll, forAny, by := latest.current(consents, i)
		if forAny {
			if d, top := denyOf(&c.Provision, req, true); d != nil {
				if !reasons {
					denies.more++
					return permit, denies, explain // a deny decides; its reasons come in the second scan
				}
				if denies.room() {
					denies.add(consentRef(consents, i) + " excludes " + denyText(d, req, top))
				}
			}
		}
		if permit >= 0 || denies.n() > 0 {
			continue // decided; only more denies may follow
		}
		if !forAll {
			if reasons && explain.room() {
				explain.add(consentRef(consents, i) + replacedText(consents, i, by))
			}
			continue
		}
		if why := permitFails(&c.Provision, req); why != permitsOK {
			if reasons && explain.room() {
				explain.add(consentRef(consents, i) + failText(why, req))
			}
			continue
		}
		permit = i
	}
	return permit, denies, explain
}

// reasonList keeps the first maxConsentReasons reasons and counts the
// rest.
type reasonList struct {
	r    []string
	more int
}

// room reports whether another reason is kept; when not, it is counted.
func (l *reasonList) room() bool {
	if len(l.r) < maxConsentReasons {
		return true
	}
	l.more++
	return false
}

func (l *reasonList) add(r string) { l.r = append(l.r, r) }

func (l *reasonList) n() int { return len(l.r) + l.more }

func (l *reasonList) list(rest string) []string {
	if l.more == 0 {
		return l.r
	}
	return append(l.r, "and "+strconv.Itoa(l.more)+" more "+rest)
}

// Why a consent in force does not permit a request.
const (
	permitsOK = iota
	failDenyConsent
	failNotStarted
	failEnded
	failCategory
	failCustodian
	failRecipient
)

// permitFails says why the top provision p does not permit req, or
// permitsOK.
func permitFails(p *Provision, req *ConsentRequest) int {
	switch {
	case p.Type != ProvisionPermit:
		return failDenyConsent
	case !p.Period.Start.IsZero() && req.At.Before(p.Period.Start):
		return failNotStarted
	case !p.Period.Covers(req.At):
		return failEnded
	case !permitsCategory(p.Codes, req.Category):
		return failCategory
	case len(p.Custodians) > 0 && !slices.Contains(p.Custodians, req.Source):
		return failCustodian
	case len(p.Recipients) > 0 && !slices.Contains(p.Recipients, req.Requester.URA):
		return failRecipient
	}
	return permitsOK
}

// failText is the reason for permitFails' answer, after the consent's name.
func failText(why int, req *ConsentRequest) string {
	switch why {
	case failDenyConsent:
		return " is a deny consent: it permits nothing"
	case failNotStarted:
		return ": its period has not started"
	case failEnded:
		return ": its period has ended"
	case failCategory:
		return " does not cover " + categoryText(req.Category)
	case failCustodian:
		return " names other custodians (CST) than this source"
	case failRecipient:
		return " names other recipients (IRCP) than this one"
	}
	return " permits it"
}

// denyOf finds the first deny provision in the tree of p that applies to
// req, and whether it is the top one. A provision applies only within its
// own period and those of the provisions around it: a subtree whose
// root's period does not cover req.At is skipped.
func denyOf(p *Provision, req *ConsentRequest, top bool) (*Provision, bool) {
	if !p.Period.Covers(req.At) {
		return nil, false
	}
	// Exceptions nested under a deny are not honoured, but a deny nested
	// in any provision may exclude something of its own.
	if p.Type != ProvisionPermit && denyApplies(p, req) {
		return p, top
	}
	for i := range p.Provisions {
		if d, _ := denyOf(&p.Provisions[i], req, false); d != nil {
			return d, false
		}
	}
	return nil, false
}

// denyApplies reports whether deny provision p names req's category (a
// code that is not LOINC names every category), source and recipient.
func denyApplies(p *Provision, req *ConsentRequest) bool {
	return (len(p.Codes) == 0 || slices.ContainsFunc(p.Codes, func(c Coding) bool {
		return c.System != fhir.SystemLOINC || c.Code == req.Category
	})) &&
		(len(p.Custodians) == 0 || slices.Contains(p.Custodians, req.Source)) &&
		(len(p.Recipients) == 0 || slices.Contains(p.Recipients, req.Requester.URA))
}

// denyText says what deny provision p, which applies to req, excludes.
func denyText(p *Provision, req *ConsentRequest, top bool) string {
	what := "all data"
	switch {
	case len(p.Codes) == 0:
	case slices.Contains(p.Codes, Coding{System: fhir.SystemLOINC, Code: req.Category}):
		what = categoryText(req.Category)
	default:
		what = reasonUnreadableCodes
	}
	if len(p.Custodians) > 0 {
		what += " from this source"
	}
	if len(p.Recipients) > 0 {
		what += " to this recipient"
	}
	if top {
		return what + " (the consent denies)"
	}
	return what + " (a nested deny provision)"
}

// permitsCategory reports whether the codes of a permit include category.
func permitsCategory(codes []Coding, category string) bool {
	return len(codes) == 0 || slices.Contains(codes, Coding{System: fhir.SystemLOINC, Code: category})
}

// orgLatest is the state of one organisation's consents: the latest
// dateTime among its deciding consents, the first consent with it, and a
// consent with it that withdraws (not an active permit), or -1.
type orgLatest struct {
	org       string
	at        time.Time
	by        int
	withdrawn int
}

// latestTable holds an orgLatest per organisation: a slice searched in
// order when small (most patients have consents at a few providers), with
// a map beside it when large.
type latestTable struct {
	list  []orgLatest
	index map[string]int
}

const latestTableMapFrom = 16

func (m *latestTable) find(org string) (*orgLatest, bool) {
	if m.index != nil {
		if i, ok := m.index[org]; ok {
			return &m.list[i], true
		}
		return nil, false
	}
	for i := range m.list {
		if m.list[i].org == org {
			return &m.list[i], true
		}
	}
	return nil, false
}

func (m *latestTable) insert(st orgLatest) {
	m.list = append(m.list, st)
	if m.index != nil {
		m.index[st.org] = len(m.list) - 1
	}
}

func latestByOrganisation(consents []Consent) *latestTable {
	entries := 0
	for i := range consents {
		entries += len(consents[i].Organizations)
	}
	m := &latestTable{list: make([]orgLatest, 0, entries)}
	if entries > latestTableMapFrom {
		m.index = make(map[string]int, entries)
	}
	for i := range consents {
		c := &consents[i]
		if !c.Status.decides() {
			continue
		}
		withdraws := c.Status != ConsentActive || c.Provision.Type != ProvisionPermit
		for _, o := range c.Organizations {
			st, ok := m.find(o)
			switch {
			case !ok:
				m.insert(orgLatest{org: o, at: c.DateTime, by: i, withdrawn: -1})
				st, _ = m.find(o)
			case c.DateTime.After(st.at):
				*st = orgLatest{org: o, at: c.DateTime, by: i, withdrawn: -1}
			case !c.DateTime.Equal(st.at):
				continue
			}
			if withdraws && st.withdrawn < 0 {
				st.withdrawn = i
			}
		}
	}
	return m
}

// current reports whether the active consent i is in force for every one
// of its organisations (it may permit) and for any of them (its denies
// count), and otherwise which consent replaces or withdraws it.
func (m *latestTable) current(consents []Consent, i int) (forAll, forAny bool, by int) {
	c := &consents[i]
	if len(c.Organizations) == 0 {
		return true, true, -1
	}
	forAll, by = true, -1
	for _, o := range c.Organizations {
		st, _ := m.find(o) // every organisation of an active consent is in the table
		switch {
		case st.at.After(c.DateTime):
			forAll = false
			if by < 0 {
				by = st.by
			}
		case st.withdrawn >= 0 && st.withdrawn != i:
			forAny, forAll = true, false
			if by < 0 {
				by = st.withdrawn
			}
		default:
			forAny = true
		}
	}
	return forAll, forAny, by
}

func replacedText(consents []Consent, i, by int) string {
	if by < 0 {
		return " is not in force"
	}
	if consents[by].DateTime.Equal(consents[i].DateTime) {
		return " is withdrawn by " + consentRef(consents, by) + " of the same organisation and dateTime"
	}
	return " is replaced by " + consentRef(consents, by) + ", recorded later by the same organisation"
}

// newestFirst orders the consents by dateTime, newest first, then by id
// and position, so that reasons do not depend on the order given.
func newestFirst(consents []Consent) []int {
	order := make([]int, len(consents))
	for i := range order {
		order[i] = i
	}
	if len(consents) > 1 {
		slices.SortFunc(order, func(a, b int) int {
			if c := consents[b].DateTime.Compare(consents[a].DateTime); c != 0 {
				return c
			}
			if c := strings.Compare(consents[a].ID, consents[b].ID); c != 0 {
				return c
			}
			return a - b
		})
	}
	return order
}

// consentRef names consent i in a reason: Consent/<id>, or its position
// when the id is empty, too long, or holds eight digits or more in a row
// (it could be a URA or a BSN).
func consentRef(consents []Consent, i int) string {
	id := consents[i].ID
	if id == "" || len(id) > 64 || digitRun(id) >= 8 {
		return "consent #" + strconv.Itoa(i+1)
	}
	return "Consent/" + id
}

func digitRun(s string) int {
	longest, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}

func statusText(s ConsentStatus) string {
	if validConsentStatus(s) {
		return string(s)
	}
	return "unknown"
}

// categoryText names a data category in words and code.
func categoryText(code string) string {
	switch code {
	case fhir.CategoryMedication:
		return "medication (LOINC " + fhir.CategoryMedication + ")"
	case fhir.CategoryGPSummary:
		return "the GP summary (LOINC " + fhir.CategoryGPSummary + ")"
	}
	if len(code) > 16 || digitRun(code) >= 8 {
		return "the requested category"
	}
	return "category " + code
}
