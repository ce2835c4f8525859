package profiles

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestValidateFiles(t *testing.T) {
	v := MustNewValidator(t)
	file := func(name string) string { return filepath.Join("testdata", name) }
	for _, tt := range []struct {
		name    string
		profile string
		files   []string
		ok      bool
		lines   []string // each must appear in the output
	}{
		{"all valid", "", []string{file("patient-valid.json"), file("md-valid.json")}, true,
			[]string{"testdata/patient-valid.json: OK\n", "testdata/md-valid.json: OK\n"}},
		{"warnings only", ProfileConsent, []string{file("consent-valid.json")}, true,
			[]string{"testdata/consent-valid.json: OK with 1 warning(s)\n", "testdata/consent-valid.json: warning invariant Consent: ppc-1"}},
		{"one invalid", ProfileIndexPatient, []string{file("patient-valid.json"), file("patient-invalid-missing.json")}, false,
			[]string{"testdata/patient-valid.json: OK\n",
				"testdata/patient-invalid-missing.json: error required Patient.link: Patient.link is required (min 1)"}},
		{"missing file", "", []string{file("no-such-file.json")}, false,
			[]string{"testdata/no-such-file.json: fatal exception: "}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			ok, err := ValidateFiles(context.Background(), v, &out, tt.profile, tt.files...)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok {
				t.Errorf("ok = %v, want %v", ok, tt.ok)
			}
			for _, l := range tt.lines {
				if !strings.Contains(out.String(), l) {
					t.Errorf("output lacks %q:\n%s", l, out.String())
				}
			}
		})
	}
	t.Run("write error", func(t *testing.T) {
		if _, err := ValidateFiles(context.Background(), v, failingWriter{}, "", file("patient-valid.json")); err == nil {
			t.Error("no error from a failing writer")
		}
	})
}
