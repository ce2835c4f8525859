package routing

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // the portal shows times in Europe/Amsterdam on any machine

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// PortalOrganisation is a source organisation as the portal names it.
type PortalOrganisation struct {
	Name       string
	Categories []string // LOINC data categories it provides (fhir.CategoryMedication, fhir.CategoryGPSummary)
}

// PortalConfig is what the portal knows beyond the store's source
// registry: names (and categories) of organisations by URA, for those
// that are no source (a supervisor) or when there is no registry.
type PortalConfig struct {
	Organisations map[string]PortalOrganisation
}

//go:embed portal
var portalFiles embed.FS

// Cookies of the portal. __Host- cookies are Secure, host-only and for
// path / by the browser's own rules.
const (
	sessionCookie = "__Host-schakelpunt-patient"
	csrfCookie    = "__Host-schakelpunt-csrf"
	portalPath    = "/portal"
)

// maxLogRows bounds the access log table; the date filter narrows it.
const maxLogRows = 200

type portal struct {
	s     *server
	cfg   PortalConfig
	pages map[string]*template.Template
	css   []byte
	zone  *time.Location
}

// portalRoutes serve the patient portal: server-rendered pages, a token
// pasted into a form (development sign-in) kept in a Secure, HttpOnly,
// SameSite=Strict cookie, and every POST form protected against CSRF by
// a double-submitted token and an Origin check. Every request is audited
// like an API request, with the patient as agent when signed in.
func (s *server) portalRoutes(e *gin.Engine, cfg PortalConfig) error {
	p := &portal{s: s, cfg: cfg, pages: map[string]*template.Template{}}
	var err error
	if p.zone, err = time.LoadLocation("Europe/Amsterdam"); err != nil {
		return err
	}
	if p.css, err = portalFiles.ReadFile("portal/portal.css"); err != nil {
		return err
	}
	for _, name := range []string{"sign-in", "registrations", "log", "consent", "confirm", "message"} {
		t, err := template.New("layout.html").ParseFS(portalFiles, "portal/layout.html", "portal/"+name+".html")
		if err != nil {
			return err
		}
		p.pages[name] = t
	}
	e.GET(portalPath, s.named("portal", func(c *gin.Context) { c.Redirect(http.StatusSeeOther, portalPath+"/") }))
	g := e.Group(portalPath, p.headers, p.identifyCookie)
	g.GET("/portal.css", s.named("portal-asset", p.stylesheet))
	g.GET("/", s.named("portal-registrations", p.registrations))
	g.POST("/sign-in", s.named("portal-sign-in", p.signIn))
	g.POST("/sign-out", s.named("portal-sign-out", p.signOut))
	g.GET("/log", s.named("portal-log", p.log))
	g.GET("/consent", s.named("portal-consent", p.consent))
	g.GET("/consent/confirm", s.named("portal-consent-confirm", p.confirm))
	g.POST("/consent", s.named("portal-consent-change", p.changeConsent))
	return nil
}

// headers: no framing, no inline script or style, nothing cached.
func (p *portal) headers(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // no-referrer would make browsers send Origin: null with the forms
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "Accept-Language, Cookie")
	c.Next()
}

// identifyCookie reads the session cookie: the patient's token, verified
// on every request (a token that expired signs the patient out).
func (p *portal) identifyCookie(c *gin.Context) {
	if ck, err := c.Request.Cookie(sessionCookie); err == nil && ck.Value != "" {
		if !p.s.identifyPatient(c, ck.Value) {
			p.clearSession(c)
		}
	}
	c.Next()
}

func (p *portal) stylesheet(c *gin.Context) {
	c.Header("Cache-Control", "max-age=3600")
	c.Data(http.StatusOK, "text/css; charset=utf-8", p.css)
}

// portalPage is what every template gets.
type portalPage struct {
	Lang     string
	Active   string
	SignedIn bool
	CSRF     string
	Error    string
	Notice   string
	msgs     map[string]string
	ctx      context.Context
	orgs     map[string]PortalOrganisation // looked up for this page
	// Per page:
	Registrations []registrationRow
	Log           []logRow
	LogTruncated  bool
	From, To      string
	Consent       []consentRow
	Consents      []consentRecord
	Confirm       *consentRow
	Change        string
}

// T is the text of key in the page's language.
func (pg *portalPage) T(key string) string {
	if s, ok := pg.msgs[key]; ok {
		return s
	}
	return key
}

func (p *portal) newPage(c *gin.Context, active string) *portalPage {
	lang := language(c.GetHeader("Accept-Language"))
	return &portalPage{Lang: lang, Active: active, SignedIn: trailOf(c).patient != nil, CSRF: p.csrfToken(c), msgs: messages[lang], ctx: c.Request.Context()}
}

func (p *portal) render(c *gin.Context, status int, name string, pg *portalPage) {
	var buf bytes.Buffer
	if err := p.pages[name].Execute(&buf, pg); err != nil {
		p.s.log.ErrorContext(c.Request.Context(), "portal template", "page", name, "err", err)
		c.Data(http.StatusInternalServerError, "text/plain; charset=utf-8", []byte("internal error"))
		return
	}
	c.Header("Content-Language", pg.Lang)
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

// message renders a page with one error (and the status to go with it).
func (p *portal) message(c *gin.Context, status int, key string) {
	pg := p.newPage(c, "")
	pg.Error = pg.T(key)
	if trailOf(c).description == "" {
		trailOf(c).description = key
	}
	p.render(c, status, "message", pg)
}

// reading starts a page that reads the signed-in patient's data: the
// page and the patient's decision for action, recorded for the audit.
func (p *portal) reading(c *gin.Context, active string, action access.Action) (*access.Patient, *portalPage, bool) {
	pt, ok := p.signedIn(c)
	if !ok {
		return nil, nil, false
	}
	d := access.DecidePatient(*pt, action)
	trailOf(c).decision = &d
	return pt, p.newPage(c, active), true
}

// signedIn checks for a patient; without one it shows the sign-in page.
func (p *portal) signedIn(c *gin.Context) (*access.Patient, bool) {
	t := trailOf(c)
	if t.patient == nil {
		pg := p.newPage(c, "")
		if _, err := c.Request.Cookie(sessionCookie); err == nil {
			pg.Error = pg.T("session-ended")
		}
		p.render(c, http.StatusUnauthorized, "sign-in", pg)
		return nil, false
	}
	d := access.DecidePatient(*t.patient, access.ReadIndex)
	t.decision = &d
	return t.patient, true
}

// csrfToken is the double-submit token: the CSRF cookie's value, set when
// absent.
func (p *portal) csrfToken(c *gin.Context) string {
	if ck, err := c.Request.Cookie(csrfCookie); err == nil && len(ck.Value) >= 22 {
		return ck.Value
	}
	if v, ok := c.Get(csrfCookie); ok {
		return v.(string)
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	c.Set(csrfCookie, v)
	http.SetCookie(c.Writer, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return v
}

// checkForm guards a POST: same origin (when the browser says), and the
// form's csrf field equal to the CSRF cookie.
func (p *portal) checkForm(c *gin.Context) bool {
	if o := c.GetHeader("Origin"); o != "" && o != "https://"+c.Request.Host {
		p.message(c, http.StatusForbidden, "csrf")
		return false
	}
	ck, err := c.Request.Cookie(csrfCookie)
	form := c.PostForm("csrf")
	if err != nil || len(ck.Value) < 22 || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(form)) != 1 {
		p.message(c, http.StatusForbidden, "csrf")
		return false
	}
	return true
}

func (p *portal) setSession(c *gin.Context, token string) {
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func (p *portal) clearSession(c *gin.Context) {
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

func (p *portal) signIn(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	if !p.checkForm(c) {
		return
	}
	if !p.s.identifyPatient(c, c.PostForm("token")) {
		pg := p.newPage(c, "")
		pg.Error = pg.T("bad-token")
		trailOf(c).description = "the token was refused"
		p.render(c, http.StatusUnauthorized, "sign-in", pg)
		return
	}
	d := access.DecidePatient(*trailOf(c).patient, access.ReadIndex)
	trailOf(c).decision = &d
	p.setSession(c, strings.TrimSpace(c.PostForm("token")))
	c.Redirect(http.StatusSeeOther, portalPath+"/")
}

func (p *portal) signOut(c *gin.Context) {
	if !p.checkForm(c) {
		return
	}
	p.clearSession(c)
	c.Redirect(http.StatusSeeOther, portalPath+"/")
}

// searchOwn runs a search of typ narrowed to the patient's BSN, noting
// what it returns for the AuditEvent.
func (p *portal) searchOwn(c *gin.Context, pt *access.Patient, typ string, params []fhir.Param, limit int) ([]store.Resource, bool, error) {
	sr, err := fhir.ParseSearch(typ, params, false)
	if err != nil {
		return nil, false, err
	}
	q := store.Query{Type: typ, Clauses: append(sr.Clauses, patientClauses(typ, pt.BSN)...), Sort: sr.Sort, Limit: limit}
	var out []store.Resource
	for {
		res, err := p.s.store.Search(c.Request.Context(), q)
		if err != nil {
			return nil, false, err
		}
		for _, r := range res.Resources {
			noteResource(c, r)
		}
		out = append(out, res.Resources...)
		if res.Next == nil {
			return out, false, nil
		}
		if len(out) >= limit {
			return out, true, nil
		}
		q.After = res.Next
	}
}

// registrationRow is one index entry: which provider registered data.
type registrationRow struct {
	URA, Organisation string
	Kinds             []string
	Since             string
}

// organisation names ura and the categories it provides: from the source
// registry in the store (Organization and Endpoint ura-<URA>, kept in step
// with the configuration), else from PortalConfig (organisations that are
// no source, such as a supervisor). Looked up once per page.
func (p *portal) organisation(ura string, pg *portalPage) PortalOrganisation {
	if o, ok := pg.orgs[ura]; ok {
		return o
	}
	o := p.cfg.Organisations[ura]
	if ura != "" && pg.ctx != nil {
		if r, err := p.s.store.Read(pg.ctx, "Organization", "ura-"+ura); err == nil {
			var doc struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(r.Body, &doc) == nil && doc.Name != "" {
				o.Name = doc.Name
			}
		}
		if r, err := p.s.store.Read(pg.ctx, "Endpoint", "ura-"+ura); err == nil {
			var doc struct {
				PayloadType []struct {
					Coding []struct{ System, Code string } `json:"coding"`
				} `json:"payloadType"`
			}
			if json.Unmarshal(r.Body, &doc) == nil {
				var cats []string
				for _, pt := range doc.PayloadType {
					for _, cd := range pt.Coding {
						if cd.System == fhir.SystemLOINC && (cd.Code == fhir.CategoryMedication || cd.Code == fhir.CategoryGPSummary) {
							cats = append(cats, cd.Code)
						}
					}
				}
				if len(cats) > 0 {
					o.Categories = cats
				}
			}
		}
	}
	if pg.orgs == nil {
		pg.orgs = map[string]PortalOrganisation{}
	}
	pg.orgs[ura] = o
	return o
}

func (p *portal) orgName(ura string, pg *portalPage) string {
	if o := p.organisation(ura, pg); o.Name != "" {
		return o.Name
	}
	if ura == "" {
		return pg.T("unknown-organisation")
	}
	return pg.T("organisation-ura") + " " + ura
}

// categoriesOf are the categories ura provides; both when unknown.
func (p *portal) categoriesOf(ura string, pg *portalPage) []string {
	if o := p.organisation(ura, pg); len(o.Categories) > 0 {
		return o.Categories
	}
	return []string{fhir.CategoryMedication, fhir.CategoryGPSummary}
}

func (p *portal) registrationRows(c *gin.Context, pt *access.Patient, pg *portalPage) ([]registrationRow, error) {
	rs, _, err := p.searchOwn(c, pt, "Patient", nil, fhir.MaxCount)
	if err != nil {
		return nil, err
	}
	var rows []registrationRow
	for _, r := range rs {
		var doc struct {
			ManagingOrganization struct {
				Identifier struct{ Value string } `json:"identifier"`
			} `json:"managingOrganization"`
		}
		_ = json.Unmarshal(r.Body, &doc)
		ura := doc.ManagingOrganization.Identifier.Value
		row := registrationRow{URA: ura, Organisation: p.orgName(ura, pg), Since: r.Updated.In(p.zone).Format("2006-01-02")}
		for _, cat := range p.categoriesOf(ura, pg) {
			row.Kinds = append(row.Kinds, pg.T("cat-"+cat))
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Organisation < rows[j].Organisation })
	return rows, nil
}

func (p *portal) registrations(c *gin.Context) {
	pt, ok := p.signedIn(c)
	if !ok {
		return
	}
	pg := p.newPage(c, "registrations")
	rows, err := p.registrationRows(c, pt, pg)
	if err != nil {
		p.fail(c, err)
		return
	}
	pg.Registrations = rows
	p.render(c, http.StatusOK, "registrations", pg)
}

// fail answers an error as a page: a bad request as such, anything else
// as a fault (logged by the FHIR error path's rules: no details shown).
func (p *portal) fail(c *gin.Context, err error) {
	fe := asFHIRError(err)
	status := statusOf[fe.Kind]
	if status == 0 || fe.Kind == fhir.KindFault {
		p.s.log.ErrorContext(c.Request.Context(), "portal request failed", "route", c.FullPath(), "err", err)
		p.message(c, http.StatusInternalServerError, "internal-error")
		return
	}
	trailOf(c).description = fe.Error()
	p.message(c, status, "bad-request")
}

// logRow is one access to the patient's data, in words.
type logRow struct {
	When, Organisation, Profession, Kind, Outcome string
	Denied                                        bool
}

// auditDoc is what the portal reads of a stored AuditEvent.
type auditDoc struct {
	Recorded string `json:"recorded"`
	Outcome  string `json:"outcome"`
	Agent    []struct {
		Type *struct {
			Coding []struct{ Code string } `json:"coding"`
		} `json:"type"`
		Role []struct {
			Coding []struct{ System, Code string } `json:"coding"`
			Text   string                          `json:"text"`
		} `json:"role"`
		Who struct {
			Type       string `json:"type"`
			Identifier *struct {
				System, Value string
			} `json:"identifier"`
		} `json:"who"`
	} `json:"agent"`
	Entity []struct {
		Query  string `json:"query"`
		Name   string `json:"name"`
		Detail []struct {
			Type        string `json:"type"`
			ValueString string `json:"valueString"`
		} `json:"detail"`
	} `json:"entity"`
}

func (p *portal) logRowOf(body []byte, pg *portalPage) logRow {
	var d auditDoc
	_ = json.Unmarshal(body, &d)
	row := logRow{}
	if t, err := time.Parse(time.RFC3339Nano, d.Recorded); err == nil {
		row.When = t.In(p.zone).Format("2006-01-02 15:04")
	}
	var role, card, ura string
	for _, a := range d.Agent {
		if a.Who.Identifier == nil {
			continue
		}
		if a.Who.Identifier.System == fhir.SystemURA {
			ura = a.Who.Identifier.Value
			continue
		}
		for _, r := range a.Role {
			for _, cd := range r.Coding {
				if cd.System == fhir.SystemUZIRole {
					role, card = cd.Code, strings.TrimPrefix(r.Text, "UZI card ")
				}
			}
		}
	}
	row.Organisation = p.orgName(ura, pg)
	row.Profession = profession(role, card, pg)
	var category, decision, resource string
	for _, e := range d.Entity {
		for _, dt := range e.Detail {
			switch dt.Type {
			case "category":
				category = strings.TrimPrefix(dt.ValueString, fhir.SystemLOINC+"|")
			case "decision":
				decision = dt.ValueString
			}
		}
		if e.Query != "" {
			if q, err := base64.StdEncoding.DecodeString(e.Query); err == nil {
				resource = resourceOfQuery(string(q))
			}
		}
	}
	row.Kind = kindOfData(category, resource, pg)
	switch {
	case decision == "deny" || d.Outcome == "4" && decision == "":
		row.Outcome, row.Denied = pg.T("outcome-denied"), true
	case d.Outcome == "0":
		row.Outcome = pg.T("outcome-ok")
	case d.Outcome == "4":
		row.Outcome, row.Denied = pg.T("outcome-refused"), true
	default:
		row.Outcome = pg.T("outcome-failed")
	}
	return row
}

// resourceOfQuery is the resource type (or operation) a logged request
// named: "GET /fhir/R4/MedicationDispense?..." gives MedicationDispense.
func resourceOfQuery(q string) string {
	_, path, _ := strings.Cut(q, " ")
	path, _, _ = strings.Cut(path, "?")
	rest, ok := strings.CutPrefix(path, BasePath+"/")
	if !ok {
		return ""
	}
	if strings.HasPrefix(rest, "Patient/$summary") {
		return "$summary"
	}
	typ, _, _ := strings.Cut(rest, "/")
	return typ
}

func (p *portal) log(c *gin.Context) {
	pt, pg, ok := p.reading(c, "log", access.ReadAuditOwn)
	if !ok {
		return
	}
	pg.From, pg.To = c.Query("from"), c.Query("to")
	// Accesses by others (every UZI identity carries a role code), newest
	// first: the patient's own visits to the portal are not listed.
	params := []fhir.Param{{Name: "agent-role", Value: fhir.SystemUZIRole + "|"}, {Name: "_sort", Value: "-date"}}
	// The days are days in the Netherlands: from the start of "from" to
	// the end of "to".
	for _, f := range []struct {
		v, prefix string
		days      int
	}{{pg.From, "ge", 0}, {pg.To, "lt", 1}} {
		if f.v == "" {
			continue
		}
		day, err := time.ParseInLocation("2006-01-02", f.v, p.zone)
		if err != nil {
			pg.Error = pg.T("bad-date")
			trailOf(c).description = "a date of the filter is not a date"
			p.render(c, http.StatusBadRequest, "log", pg)
			return
		}
		params = append(params, fhir.Param{Name: "date", Value: f.prefix + day.AddDate(0, 0, f.days).Format(time.RFC3339)})
	}
	rs, more, err := p.searchOwn(c, pt, "AuditEvent", params, maxLogRows)
	if err != nil {
		p.fail(c, err)
		return
	}
	for _, r := range rs {
		pg.Log = append(pg.Log, p.logRowOf(r.Body, pg))
	}
	pg.LogTruncated = more
	p.render(c, http.StatusOK, "log", pg)
}

// consentRow is one provider and data category, and whether the
// patient's consents let that data flow now.
type consentRow struct {
	URA, Organisation, Category, Kind string
	Shared                            bool
}

// consentRecord is one of the patient's consents, as a line.
type consentRecord struct {
	Date, Organisation, Status, ByPatient string
}

// ownConsents reads every consent about the patient.
func (p *portal) ownConsents(c *gin.Context, pt *access.Patient) ([]store.Resource, []access.Consent, error) {
	rs, _, err := p.searchOwn(c, pt, "Consent", nil, 100_000)
	if err != nil {
		return nil, nil, err
	}
	parsed := make([]access.Consent, 0, len(rs))
	for _, r := range rs {
		pc, err := access.ParseConsent(r.Body)
		if err != nil {
			return nil, nil, err
		}
		parsed = append(parsed, pc)
	}
	return rs, parsed, nil
}

// anyRecipient stands for "a care provider" in the consent grid: a URA no
// consent names, so that the grid shows what holds for recipients in
// general (a consent naming particular recipients is listed below it).
var anyRecipient = access.Principal{URA: "00000000"}

// shared reports whether the consents let category flow from ura now.
func shared(consents []access.Consent, ura, category string, now time.Time) bool {
	return access.DecideConsent(consents, access.ConsentRequest{Requester: anyRecipient, Category: category, Source: ura, At: now}).Permit
}

func (p *portal) consentRows(c *gin.Context, pt *access.Patient, pg *portalPage) ([]consentRow, []consentRecord, error) {
	regs, err := p.registrationRows(c, pt, pg)
	if err != nil {
		return nil, nil, err
	}
	rs, consents, err := p.ownConsents(c, pt)
	if err != nil {
		return nil, nil, err
	}
	uras := map[string]bool{}
	for _, r := range regs {
		uras[r.URA] = true
	}
	var records []consentRecord
	for i, pc := range consents {
		for _, o := range pc.Organizations {
			uras[o] = true
		}
		rec := consentRecord{Date: pc.DateTime.In(p.zone).Format("2006-01-02 15:04"), Status: pg.T("status-" + string(pc.Status))}
		var names []string
		for _, o := range pc.Organizations {
			names = append(names, p.orgName(o, pg))
		}
		rec.Organisation = strings.Join(names, ", ")
		if bytes.Contains(rs[i].Body, []byte(`"performer"`)) && performerIsPatient(rs[i].Body, pt.BSN) {
			rec.ByPatient = pg.T("by-you")
		} else {
			rec.ByPatient = pg.T("by-provider")
		}
		records = append(records, rec)
	}
	now := p.s.now()
	var rows []consentRow
	for ura := range uras {
		if ura == "" {
			continue
		}
		for _, cat := range p.categoriesOf(ura, pg) {
			rows = append(rows, consentRow{URA: ura, Organisation: p.orgName(ura, pg), Category: cat, Kind: pg.T("cat-" + cat), Shared: shared(consents, ura, cat, now)})
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Organisation != rows[j].Organisation {
			return rows[i].Organisation < rows[j].Organisation
		}
		return rows[i].Category < rows[j].Category
	})
	slices.Reverse(records)
	return rows, records, nil
}

func performerIsPatient(body []byte, bsn string) bool {
	var doc struct {
		Performer []struct {
			Identifier struct{ System, Value string } `json:"identifier"`
		} `json:"performer"`
	}
	if json.Unmarshal(body, &doc) != nil || len(doc.Performer) == 0 {
		return false
	}
	for _, pf := range doc.Performer {
		if pf.Identifier.System != fhir.SystemBSN || pf.Identifier.Value != bsn {
			return false
		}
	}
	return true
}

func (p *portal) consent(c *gin.Context) {
	pt, pg, ok := p.reading(c, "consent", access.ReadConsent)
	if !ok {
		return
	}
	rows, records, err := p.consentRows(c, pt, pg)
	if err != nil {
		p.fail(c, err)
		return
	}
	pg.Consent, pg.Consents = rows, records
	switch c.Query("done") {
	case "withdraw":
		pg.Notice = pg.T("done-withdraw")
	case "give":
		pg.Notice = pg.T("done-give")
	case "still-excluded":
		pg.Notice = pg.T("done-still-excluded")
	}
	p.render(c, http.StatusOK, "consent", pg)
}

// consentChange reads and checks org, category and change of a request.
func (p *portal) consentChange(c *gin.Context, get func(string) string, pg *portalPage) (*consentRow, string, bool) {
	ura, cat, change := get("org"), get("category"), get("change")
	if !fhir.ValidURA(ura) || (cat != fhir.CategoryMedication && cat != fhir.CategoryGPSummary) || (change != "withdraw" && change != "give") {
		trailOf(c).description = "the consent change is not one the portal offers"
		p.message(c, http.StatusBadRequest, "bad-request")
		return nil, "", false
	}
	return &consentRow{URA: ura, Organisation: p.orgName(ura, pg), Category: cat, Kind: pg.T("cat-" + cat)}, change, true
}

// confirm shows the confirmation step of a consent change.
func (p *portal) confirm(c *gin.Context) {
	_, pg, ok := p.reading(c, "consent", access.ReadConsent)
	if !ok {
		return
	}
	row, change, ok := p.consentChange(c, c.Query, pg)
	if !ok {
		return
	}
	pg.Confirm, pg.Change = row, change
	p.render(c, http.StatusOK, "confirm", pg)
}

// changeConsent records the patient's decision about one provider and
// category as a new Consent: recorded for that provider (organization),
// with the patient as performer, stating for each category the provider
// holds whether it may be shared (a permit provision with the source as
// custodian, and a nested deny for what is withheld; a deny provision when
// nothing is shared). Being the provider's latest consent it replaces
// that provider's earlier ones (access.DecideConsent rule 3); its deny
// also excludes the category from this source under any other consent.
func (p *portal) changeConsent(c *gin.Context) {
	pt, ok := p.signedIn(c)
	if !ok {
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	if !p.checkForm(c) {
		return
	}
	pg := p.newPage(c, "consent")
	row, change, ok := p.consentChange(c, c.PostForm, pg)
	if !ok {
		return
	}
	action := access.RecordConsent
	if change == "withdraw" {
		action = access.WithdrawConsent
	}
	d := access.DecidePatient(*pt, action)
	trailOf(c).decision = &d
	trailOf(c).category = row.Category
	// Read, decide and write as one step: two changes at once must not
	// each start from the state before the other.
	unlock := p.s.condLocks.lock("portal-consent")
	defer unlock()
	_, consents, err := p.ownConsents(c, pt)
	if err != nil {
		p.fail(c, err)
		return
	}
	now := p.s.now()
	var permit, deny []string
	for _, cat := range p.categoriesOf(row.URA, pg) {
		on := shared(consents, row.URA, cat, now)
		if cat == row.Category {
			on = change == "give"
		}
		if on {
			permit = append(permit, cat)
		} else {
			deny = append(deny, cat)
		}
	}
	body := patientConsent(pt.BSN, row.URA, permit, deny, now)
	res, err := p.s.validator.Check(c.Request.Context(), body, p.s.validator.ProfileFor("Consent"))
	if err != nil {
		p.fail(c, err)
		return
	}
	r, err := p.s.store.Create(c.Request.Context(), writeOf(res, p.s.newID()))
	if err != nil {
		p.fail(c, err)
		return
	}
	noteResource(c, r)
	done := change
	if change == "give" {
		_, after, err := p.ownConsents(c, pt)
		if err == nil && !shared(after, row.URA, row.Category, now) {
			done = "still-excluded"
		}
	}
	c.Redirect(http.StatusSeeOther, portalPath+"/consent?done="+url.QueryEscape(done))
}

// patientConsent is the Consent the portal writes for the patient.
func patientConsent(bsn, ura string, permit, deny []string, now time.Time) []byte {
	ident := func(system, value string) map[string]any { return map[string]any{"system": system, "value": value} }
	codes := func(cats []string) []any {
		var out []any
		for _, c := range cats {
			out = append(out, map[string]any{"coding": []any{map[string]any{"system": fhir.SystemLOINC, "code": c}}})
		}
		return out
	}
	custodian := []any{map[string]any{
		"role":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}}},
		"reference": map[string]any{"identifier": ident(fhir.SystemURA, ura)},
	}}
	at := now.UTC().Format("2006-01-02T15:04:05.000Z07:00") // milliseconds: two changes in one second stay ordered
	var provision map[string]any
	if len(permit) > 0 {
		provision = map[string]any{"type": "permit", "period": map[string]any{"start": at}, "actor": custodian, "code": codes(permit)}
		if len(deny) > 0 {
			provision["provision"] = []any{map[string]any{"type": "deny", "actor": custodian, "code": codes(deny)}}
		}
	} else {
		provision = map[string]any{"type": "deny", "period": map[string]any{"start": at}, "actor": custodian, "code": codes(deny)}
	}
	doc := map[string]any{
		"resourceType": "Consent",
		"status":       "active",
		"scope":        map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"category":     []any{map[string]any{"coding": []any{map[string]any{"system": fhir.SystemLOINC, "code": "59284-0"}}}},
		"patient":      map[string]any{"identifier": ident(fhir.SystemBSN, bsn)},
		"dateTime":     at,
		"performer":    []any{map[string]any{"type": "Patient", "identifier": ident(fhir.SystemBSN, bsn)}},
		"organization": []any{map[string]any{"identifier": ident(fhir.SystemURA, ura)}},
		"provision":    provision,
	}
	b, _ := json.Marshal(doc)
	return b
}
