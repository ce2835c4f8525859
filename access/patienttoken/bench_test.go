package patienttoken_test

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify: the cost of a patient request's token check, ES256 and
// RS256, against decoding the same token without verifying it (the
// reference, measured in the same run).
func BenchmarkVerify(b *testing.B) {
	k := newKeys(b)
	v := verifier(b, k)
	ctx := context.Background()
	tokens := map[string]string{
		"ES256": sign(b, jwt.SigningMethodES256, "ec-1", k.ec, claims(nil)),
		"RS256": sign(b, jwt.SigningMethodRS256, "rsa-1", k.rsa, claims(nil)),
	}
	b.Run("reference-decode-only", func(b *testing.B) {
		p := jwt.NewParser()
		for b.Loop() {
			var c jwt.MapClaims
			if _, _, err := p.ParseUnverified(tokens["ES256"], &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, alg := range []string{"ES256", "RS256"} {
		b.Run(alg, func(b *testing.B) {
			for b.Loop() {
				if _, err := v.Verify(ctx, tokens[alg]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
