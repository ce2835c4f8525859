package routing

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

const ndjson = "application/fhir+ndjson"

// auditRoutes are the access log's operations: $verify, the Bulk Data
// style $export with its status and file endpoints.
func (s *server) auditRoutes() []route {
	if s.auditLog == nil {
		return nil
	}
	return []route{
		{http.MethodGet, "/AuditEvent/$verify", "$verify", access.ReadAuditAll, s.verify},
		{http.MethodPost, "/AuditEvent/$verify", "$verify", access.ReadAuditAll, s.verify},
		{http.MethodGet, "/AuditEvent/$export", "$export", access.ReadAuditAll, s.exportKickOff},
		{http.MethodGet, "/$export-status/:job", "$export-status", access.ReadAuditAll, s.exportStatus},
		{http.MethodDelete, "/$export-status/:job", "$export-status", access.ReadAuditAll, s.exportCancel},
		{http.MethodGet, "/$export-file/:job/:file", "$export-file", access.ReadAuditAll, s.exportFile},
	}
}

// verify checks the hash chain and answers with Parameters.
func (s *server) verify(c *gin.Context) {
	rep, err := audit.Verify(c.Request.Context(), s.auditLog)
	if err != nil {
		s.fail(c, err)
		return
	}
	type param struct {
		Name         string `json:"name"`
		ValueBoolean *bool  `json:"valueBoolean,omitempty"`
		ValueString  string `json:"valueString,omitempty"`
		ValueInteger *int64 `json:"valueInteger,omitempty"`
	}
	ok := rep.OK()
	checked := rep.Checked
	params := []param{{Name: "intact", ValueBoolean: &ok}, {Name: "checked", ValueInteger: &checked},
		{Name: "head", ValueString: strconv.FormatInt(rep.Head.Seq, 10) + " " + rep.Head.Hash}}
	if rep.Checkpoint.Seq > 0 {
		params = append(params, param{Name: "checkpoint", ValueString: strconv.FormatInt(rep.Checkpoint.Seq, 10) + " " + rep.Checkpoint.Hash})
	}
	if b := rep.Broken; b != nil {
		seq := b.Seq
		params = append(params, param{Name: "brokenAt", ValueInteger: &seq}, param{Name: "reason", ValueString: b.Reason})
		if b.ID != "" {
			params = append(params, param{Name: "event", ValueString: "AuditEvent/" + b.ID})
		}
	}
	body, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	s.write(c, http.StatusOK, body)
}

// exportTTL is how long a finished export stays available for download.
// Export files are copies of the access log: they must not outlive it
// (retention) nor fill the data directory, so they are removed after this.
const exportTTL = 24 * time.Hour

// exportJob is one $export: its NDJSON file under the export directory.
type exportJob struct {
	owner    string
	started  time.Time
	until    int64 // the chain head at kick-off: the export's snapshot
	request  string
	mu       sync.Mutex
	done     bool
	count    int
	err      error
	cancel   context.CancelFunc
	dir      string
	finished time.Time
}

type exportJobs struct {
	mu   sync.Mutex
	jobs map[string]*exportJob
}

func (s *server) job(c *gin.Context) (*exportJob, string, bool) {
	id := c.Param("job")
	s.sweepExports()
	s.exports.mu.Lock()
	j, ok := s.exports.jobs[id]
	s.exports.mu.Unlock()
	if !ok || j.owner != requester(c) {
		s.fail(c, fhir.Errorf(fhir.KindNotFound, "not-found", "no such export"))
		return nil, "", false
	}
	return j, id, true
}

// exportKickOff starts an asynchronous export of the access log as NDJSON
// (FHIR Bulk Data: Prefer: respond-async, 202 and a status URL).
func (s *server) exportKickOff(c *gin.Context) {
	if !preferAsync(c) {
		s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "$export runs asynchronously: send Prefer: respond-async"))
		return
	}
	var since time.Time
	for k, vs := range c.Request.URL.Query() {
		for _, v := range vs { // every value: a second _type is not ignored
			switch k {
			case "_since":
				r, ok := fhir.ParseDateRange(v)
				if !ok || len(vs) > 1 {
					s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "_since must be one instant").At("_since"))
					return
				}
				since = time.UnixMicro(r.Lo)
			case "_type":
				if v != "AuditEvent" {
					s.fail(c, fhir.Errorf(fhir.KindInvalid, "not-supported", "only AuditEvent can be exported here").At("_type"))
					return
				}
			case "_outputFormat":
				if v != ndjson && v != "application/ndjson" && v != "ndjson" {
					s.fail(c, fhir.Errorf(fhir.KindInvalid, "not-supported", "_outputFormat must be application/fhir+ndjson").At("_outputFormat"))
					return
				}
			case "_format", "_pretty":
			default:
				s.fail(c, fhir.Errorf(fhir.KindInvalid, "not-supported", "unknown $export parameter %q", k).At(k))
				return
			}
		}
	}
	// The export is a snapshot: the events up to the chain head now, not
	// those recorded while it runs (this kick-off's own event included).
	head, err := s.auditLog.AuditHead(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	s.sweepExports()
	id := randomToken()
	dir := filepath.Join(s.exportDir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Hour)
	j := &exportJob{owner: requester(c), started: s.now(), until: head.Seq, request: s.baseURL(c) + "/AuditEvent/$export", cancel: cancel, dir: dir}
	s.exports.mu.Lock()
	s.exports.jobs[id] = j
	s.exports.mu.Unlock()
	go s.runExport(ctx, j, since)
	c.Header("Content-Location", s.baseURL(c)+"/$export-status/"+id)
	s.write(c, http.StatusAccepted, fhir.OperationOutcome(fhir.Issue{Severity: "information", Code: "informational", Diagnostics: "export started"}))
}

func preferAsync(c *gin.Context) bool {
	for _, v := range c.Request.Header.Values("Prefer") {
		if v == "respond-async" {
			return true
		}
	}
	return false
}

func randomToken() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// runExport streams the chain in order into AuditEvent.ndjson, a batch at
// a time: memory stays flat whatever the log's size.
func (s *server) runExport(ctx context.Context, j *exportJob, since time.Time) {
	defer j.cancel()
	n, err := func() (int, error) {
		f, err := os.Create(filepath.Join(j.dir, "AuditEvent.ndjson"))
		if err != nil {
			return 0, err
		}
		defer f.Close()
		w := bufio.NewWriterSize(f, 256<<10)
		n, err := exportAudit(ctx, s.auditLog, since, j.until, w)
		if err != nil {
			return n, err
		}
		if err := w.Flush(); err != nil {
			return n, err
		}
		return n, f.Sync()
	}()
	j.mu.Lock()
	j.done, j.count, j.err, j.finished = true, n, err, s.now()
	j.mu.Unlock()
}

// exportAudit writes every stored AuditEvent up to sequence number until
// and stored at or after since, one per line.
func exportAudit(ctx context.Context, log store.AuditLog, since time.Time, until int64, w io.Writer) (int, error) {
	const batch = 1000
	var after int64
	n := 0
	for after < until {
		entries, err := log.ScanAudit(ctx, after, batch)
		if err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		if len(entries) == 0 {
			return n, nil
		}
		// A batch may come back short when an event's resource is gone
		// (Verify reports that): go on until the head, not until the
		// first short batch.
		for _, e := range entries {
			if e.Seq > until {
				return n, nil
			}
			after = e.Seq
			if !since.IsZero() && e.Resource.Updated.Before(since) {
				continue
			}
			if _, err := w.Write(e.Resource.Body); err != nil {
				return n, err
			}
			if _, err := w.Write([]byte{'\n'}); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// sweepExports removes finished exports older than exportTTL, and export
// directories that no job knows (an earlier process's, or a cancelled
// one's) once they are as old.
func (s *server) sweepExports() {
	now := s.now()
	s.exports.mu.Lock()
	defer s.exports.mu.Unlock()
	for id, j := range s.exports.jobs {
		j.mu.Lock()
		expired := j.done && now.Sub(j.finished) > exportTTL
		j.mu.Unlock()
		if expired {
			delete(s.exports.jobs, id)
			_ = os.RemoveAll(j.dir)
		}
	}
	entries, err := os.ReadDir(s.exportDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if _, known := s.exports.jobs[e.Name()]; known {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > exportTTL {
			_ = os.RemoveAll(filepath.Join(s.exportDir, e.Name()))
		}
	}
}

func (s *server) exportStatus(c *gin.Context) {
	j, id, ok := s.job(c)
	if !ok {
		return
	}
	j.mu.Lock()
	done, count, err := j.done, j.count, j.err
	j.mu.Unlock()
	switch {
	case !done:
		c.Header("X-Progress", "in progress")
		c.Header("Retry-After", "2")
		c.Status(http.StatusAccepted)
		c.Writer.WriteHeaderNow()
	case err != nil:
		s.fail(c, fhir.Errorf(fhir.KindFault, "exception", "the export failed").Wrap(err))
	default:
		manifest := map[string]any{
			"transactionTime":     fhir.FormatInstant(j.started),
			"request":             j.request,
			"requiresAccessToken": true,
			"output": []map[string]any{{
				"type": "AuditEvent", "url": s.baseURL(c) + "/$export-file/" + id + "/AuditEvent.ndjson", "count": count,
			}},
			"error": []any{},
		}
		body, _ := json.Marshal(manifest)
		c.Data(http.StatusOK, "application/json", body)
	}
}

func (s *server) exportCancel(c *gin.Context) {
	j, id, ok := s.job(c)
	if !ok {
		return
	}
	j.cancel()
	s.exports.mu.Lock()
	delete(s.exports.jobs, id)
	s.exports.mu.Unlock()
	_ = os.RemoveAll(j.dir)
	c.Status(http.StatusAccepted)
	c.Writer.WriteHeaderNow()
}

// exportFile streams a finished export's file. Its AuditEvent is recorded
// before the first byte leaves (fail closed), then the file streams from
// disk.
func (s *server) exportFile(c *gin.Context) {
	j, _, ok := s.job(c)
	if !ok {
		return
	}
	if c.Param("file") != "AuditEvent.ndjson" {
		s.fail(c, fhir.Errorf(fhir.KindNotFound, "not-found", "no such export file"))
		return
	}
	j.mu.Lock()
	done, err := j.done, j.err
	j.mu.Unlock()
	if !done || err != nil {
		s.fail(c, fhir.Errorf(fhir.KindNotFound, "not-found", "the export is not ready"))
		return
	}
	f, err := os.Open(filepath.Join(j.dir, "AuditEvent.ndjson"))
	if err != nil {
		s.fail(c, err)
		return
	}
	defer f.Close()
	s.stream(c, ndjson, func(w io.Writer) error {
		_, err := io.Copy(w, f)
		return err
	})
}

// stream records the request's AuditEvent first and then streams the
// answer straight to the client, for bodies too large to hold back.
func (s *server) stream(c *gin.Context, contentType string, body func(io.Writer) error) {
	t := trailOf(c)
	if err := s.recordNow(c, http.StatusOK); err != nil {
		s.fail(c, err)
		return
	}
	t.recorded = true
	w := t.realWriter
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := body(bw); err != nil {
		s.log.WarnContext(c.Request.Context(), "stream ended early", "err", err)
	}
	_ = bw.Flush()
}
