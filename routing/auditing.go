package routing

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// AuditRecorder stores the AuditEvents of one interaction durably, all or
// none; declared here, where it is used (audit.Recorder implements it).
type AuditRecorder interface {
	RecordAll(ctx context.Context, evs []audit.Event) error
}

// expecter is an AuditRecorder told of the requests in flight, to group
// their events into fewer commits under load (audit.Recorder.Expect).
type expecter interface {
	Expect() (done func())
}

// heldWriter holds a response back until its AuditEvent is stored: fail
// closed, nothing leaves before the access is on record.
type heldWriter struct {
	gin.ResponseWriter
	header http.Header // the handler's headers, released with the body
	status int
	body   []byte
}

func (w *heldWriter) Header() http.Header { return w.header }

func (w *heldWriter) WriteHeader(code int) {
	if w.status == 0 && code > 0 { // gin's Redirect first sets -1: not a status
		w.status = code
	}
}
func (w *heldWriter) WriteHeaderNow() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
}
func (w *heldWriter) Write(b []byte) (int, error) {
	w.WriteHeaderNow()
	w.body = append(w.body, b...)
	return len(b), nil
}
func (w *heldWriter) WriteString(s string) (int, error) {
	w.WriteHeaderNow()
	w.body = append(w.body, s...)
	return len(s), nil
}

// hold takes b as the body, without a copy: the caller does not change
// it again (it may be shared, as a cached CapabilityStatement is: a later
// Write appends to a copy).
func (w *heldWriter) hold(b []byte) {
	w.WriteHeaderNow()
	if w.body == nil {
		w.body = b[:len(b):len(b)]
		return
	}
	w.body = append(w.body, b...)
}
func (w *heldWriter) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
func (w *heldWriter) Size() int     { return len(w.body) }
func (w *heldWriter) Written() bool { return w.status != 0 }
func (w *heldWriter) Flush()        {}

// audited records every interaction as one AuditEvent, permitted or not,
// and only then releases the response. When the record cannot be stored,
// the client gets 503 and none of the response.
func (s *server) audited(c *gin.Context) {
	t := trailOf(c)
	if ex, ok := s.audit.(expecter); ok {
		t.expected = ex.Expect()
		defer t.expected() // when nothing was recorded
	}
	real := c.Writer
	held := &heldWriter{ResponseWriter: real, header: http.Header{}}
	t.realWriter = real
	c.Writer = held
	c.Next()
	c.Writer = real
	if t.recorded { // a streamed answer, recorded before it started
		return
	}
	h := real.Header()
	var err error
	if t.early != nil {
		err = <-t.early // begun by the handler (recordEarly)
	} else {
		err = s.recordNow(c, held.Status())
	}
	if err != nil {
		// None of what the handler prepared leaves: not its headers
		// (ETag, Location, Content-Length, ...), not its body.
		fe := asFHIRError(err)
		s.log.ErrorContext(c.Request.Context(), "audit record failed: no data released", "err", fe.Err)
		h.Set("Content-Type", contentTypeFHIR)
		real.WriteHeader(http.StatusServiceUnavailable)
		_, _ = real.Write(fhir.OperationOutcome(fe.Issues...))
		return
	}
	for k, v := range held.header {
		h[k] = v
	}
	real.WriteHeader(held.Status())
	if len(held.body) > 0 {
		_, _ = real.Write(held.body)
	}
}

// recordNow stores the request's AuditEvent with the given status: one
// event, or one per patient when a search's results are about several
// (see notePatientOfResults).
func (s *server) recordNow(c *gin.Context, status int) error {
	return s.record(c.Request.Context(), trailOf(c), s.events(c, status))
}

// recordEarly begins to store the request's AuditEvent, with the given
// status, while the handler goes on; the audit middleware waits for it
// before anything is released, as for recordNow. A handler calls it once
// the event's content is known and the answer's status is settled, so
// that the durable write overlaps the rest of its work. Should the
// handler fail after all, the event records an answer with data that the
// requester did not get: an access log may say too much, never too
// little.
func (s *server) recordEarly(c *gin.Context, status int) {
	t, ctx, evs := trailOf(c), c.Request.Context(), s.events(c, status)
	done := make(chan error, 1)
	t.early = done
	go func() { done <- s.record(ctx, t, evs) }()
}

// record stores a request's AuditEvents evs and ends the recorder's
// count of the request (its trail t). Not canceled with the request's
// context ctx: a client that hangs up after its write was committed must
// not take the write's AuditEvent with it.
func (s *server) record(ctx context.Context, t *trail, evs []audit.Event) error {
	err := s.audit.RecordAll(context.WithoutCancel(ctx), evs)
	if t.expected != nil {
		t.expected()
	}
	return err
}

// events are the request's AuditEvents with the given status.
func (s *server) events(c *gin.Context, status int) []audit.Event {
	t := trailOf(c)
	if t.patientBSN == "" {
		notePatientInQuery(c, paramsOf(c.Request.URL.Query()))
	}
	name, _ := c.Get(keyInteraction)
	interaction, _ := name.(string)
	ev := audit.Event{
		Interaction: interaction,
		Status:      status,
		Description: t.description,
		Agent:       agentOf(c),
		PatientBSN:  t.patientBSN,
		Query:       c.Request.Method + " " + c.Request.URL.RequestURI(),
		Resources:   t.resources,
		Category:    t.category,
		Sources:     t.sources,
	}
	if ev.Status >= 400 && ev.Description == "" {
		ev.Description = http.StatusText(ev.Status)
	}
	if d := t.decision; d != nil {
		permit := d.Permit
		ev.Permit, ev.Reasons = &permit, d.Reasons
	}
	evs := []audit.Event{ev}
	if len(t.byPatient) > 0 {
		evs = evs[:0]
		for _, part := range t.byPatient {
			ev.PatientBSN, ev.Resources = part.bsn, part.resources
			evs = append(evs, ev)
		}
	}
	return evs
}
