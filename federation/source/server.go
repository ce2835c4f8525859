package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/schakelpunt/schakelpunt/access/mtls"
)

// Options configures a source's handler and server.
type Options struct {
	// Certificate is the source's server certificate (a UZI server
	// certificate, card type S, in the demo).
	Certificate tls.Certificate
	// ClientCAs are the CAs whose certificates may connect: the switching
	// point's client certificate must be issued by one of them.
	ClientCAs []*x509.Certificate
	// CRLFiles are optional revocation lists of the client CAs.
	CRLFiles []string
	// BaseURL is the public base of the FHIR API, e.g.
	// https://127.0.0.1:9102/fhir/R4; empty takes https://<Host>/fhir/R4
	// from each request.
	BaseURL string
	// Wrap, if set, wraps the handler (tests make a source slow or broken
	// with it).
	Wrap func(http.Handler) http.Handler
	// ShutdownTimeout bounds the graceful shutdown; default 5 s.
	ShutdownTimeout time.Duration
	// Logger receives refused handshakes and internal errors; nil discards.
	// Nothing medical and no patient identifier is logged.
	Logger *slog.Logger
	// Now is the clock of Bundle timestamps; default time.Now.
	Now func() time.Time
}

// Server is one source: its data behind a mutual-TLS listener.
type Server struct {
	srv     *http.Server
	timeout time.Duration
}

// NewServer returns a source serving d. The listener's TLS is
// mtls.NewServerConfig's: a client certificate from opts.ClientCAs is
// required.
func NewServer(d *Data, opts Options) (*Server, error) {
	if d == nil {
		return nil, errors.New("source: no data")
	}
	if len(opts.Certificate.Certificate) == 0 {
		return nil, errors.New("source: no server certificate")
	}
	tlsConf, err := mtls.NewServerConfig(mtls.ServerOptions{
		Certificate: opts.Certificate,
		ClientCAs:   opts.ClientCAs,
		CRLFiles:    opts.CRLFiles,
		Logger:      opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := NewHandler(d, opts)
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			TLSConfig:         tlsConf,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		timeout: opts.ShutdownTimeout,
	}
	if s.timeout <= 0 {
		s.timeout = 5 * time.Second
	}
	return s, nil
}

// Serve answers on ln (a plain TCP listener: Serve does the TLS) until ctx
// ends, then shuts down gracefully, letting requests in flight finish
// within the shutdown timeout. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	served := make(chan error, 1)
	go func() { served <- s.srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-served:
		return fmt.Errorf("source: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("source: shutdown: %w", err)
	}
	return nil
}

// metadata answers a CapabilityStatement built from the same table as the
// searches.
func (h *handler) metadata(w http.ResponseWriter, r *http.Request) {
	if err := onlyFormat(r.URL.Query()); err != nil {
		h.failErr(w, err)
		return
	}
	types := h.data.Types()
	for t := range typeParams {
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	type param struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	type op struct {
		Name       string `json:"name"`
		Definition string `json:"definition"`
	}
	type interaction struct {
		Code string `json:"code"`
	}
	type res struct {
		Type        string        `json:"type"`
		Interaction []interaction `json:"interaction"`
		SearchParam []param       `json:"searchParam"`
		Operation   []op          `json:"operation,omitempty"`
	}
	paramTypes := map[string]string{"_id": "token", "patient": "reference", "subject": "reference", "status": "token", "whenhandedover": "date", "_count": "number"}
	var rs []res
	for _, t := range types {
		x := res{Type: t, Interaction: []interaction{{"read"}, {"search-type"}}}
		for _, p := range append([]string{"_id"}, paramsOf(t)...) {
			x.SearchParam = append(x.SearchParam, param{p, paramTypes[p]})
		}
		if t == "Patient" {
			x.Operation = []op{{"summary", "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"}}
		}
		rs = append(rs, x)
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         h.now().UTC().Format("2006-01-02"),
		"publisher":    "Schakelpunt",
		"kind":         "instance",
		"software":     map[string]any{"name": "schakelpunt source (reference source server)"},
		"implementation": map[string]any{
			"description": "Reference source FHIR server",
			"url":         h.baseURL(r),
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"json"},
		"rest": []map[string]any{{
			"mode":     "server",
			"security": map[string]any{"description": "Mutual TLS: a client certificate is required."},
			"resource": rs,
		}},
	}
	body, err := json.Marshal(cs)
	if err != nil {
		h.failErr(w, err)
		return
	}
	h.write(w, http.StatusOK, body)
}
