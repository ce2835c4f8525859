package routing

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/fhir"
)

const contentTypeFHIR = "application/fhir+json; charset=utf-8"

// ndjsonTypes are accepted as _format where NDJSON is offered (searches
// and export files).
var ndjsonTypes = map[string]bool{"application/fhir+ndjson": true, "application/ndjson": true, "ndjson": true}

var jsonTypes = map[string]bool{
	"application/fhir+json": true,
	"application/json":      true,
	"json":                  true,
	"application/json+fhir": true, // DSTU2 name, still sent by old clients
}

// negotiate checks _format / Accept (406) and the Content-Type of a body
// (415), and limits the body (413).
func (s *server) negotiate(c *gin.Context) {
	r := c.Request
	if f := r.URL.Query().Get("_format"); f != "" {
		mt, _, _ := mime.ParseMediaType(f)
		if !jsonTypes[strings.ToLower(f)] && !jsonTypes[mt] && !ndjsonTypes[mt] {
			s.fail(c, fhir.Errorf(fhir.KindNotAcceptable, "not-supported", "_format %q is not supported: this server speaks JSON only", f).At("_format"))
			c.Abort()
			return
		}
	} else if a := r.Header.Get("Accept"); a != "" && !acceptsJSON(a) {
		s.fail(c, fhir.Errorf(fhir.KindNotAcceptable, "not-supported", "Accept %q is not supported: this server speaks application/fhir+json", a))
		c.Abort()
		return
	}
	if r.Body != nil && r.Body != http.NoBody && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		ct := r.Header.Get("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		form := mt == "application/x-www-form-urlencoded" && strings.HasSuffix(c.FullPath(), "/_search")
		if r.ContentLength != 0 && !form && (err != nil || !jsonTypes[mt]) {
			s.fail(c, fhir.Errorf(fhir.KindUnsupported, "not-supported", "Content-Type %q is not supported: send application/fhir+json", ct))
			c.Abort()
			return
		}
		r.Body = http.MaxBytesReader(c.Writer, r.Body, s.maxBody)
	}
	c.Next()
}

func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if jsonTypes[mt] || ndjsonTypes[mt] || mt == "*/*" || mt == "application/*" {
			return true
		}
	}
	return false
}

// readBody reads the (limited) request body.
func readBody(c *gin.Context) ([]byte, error) {
	if c.Request.Body == nil {
		return nil, fhir.Errorf(fhir.KindInvalid, "required", "request body is empty")
	}
	b, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return nil, asFHIRError(err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fhir.Errorf(fhir.KindInvalid, "required", "request body is empty")
	}
	return b, nil
}

// wantsNDJSON reports whether the client asked for NDJSON.
func wantsNDJSON(c *gin.Context) bool {
	mt, _, _ := mime.ParseMediaType(c.Request.URL.Query().Get("_format"))
	return ndjsonTypes[mt]
}

// write sends a FHIR JSON body, indented with _pretty=true.
func (s *server) write(c *gin.Context, status int, body []byte) {
	if c.Request.URL.Query().Get("_pretty") == "true" {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = buf.Bytes()
		}
	}
	// With its length known the body goes out in one write, not in
	// chunks of net/http's buffer.
	c.Header("Content-Length", strconv.Itoa(len(body)))
	if h, ok := c.Writer.(*heldWriter); ok && status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified {
		// Held until audited: the body is handed over, not copied.
		c.Header("Content-Type", contentTypeFHIR)
		c.Status(status)
		h.hold(body)
		return
	}
	c.Data(status, contentTypeFHIR, body)
}
