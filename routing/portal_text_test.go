package routing

import "testing"

func TestLanguage(t *testing.T) {
	cases := map[string]string{
		"":                           "nl",
		"nl-NL,nl;q=0.9":             "nl",
		"en-GB,en;q=0.9":             "en",
		"en":                         "en",
		"de-DE,en;q=0.8,nl;q=0.9":    "nl",
		"de-DE,en;q=0.9,nl;q=0.8":    "en",
		"fr-FR":                      "nl",
		"en;q=0":                     "nl",
		"nl,en":                      "nl",
		"en,nl":                      "en",
		"EN-us":                      "en",
		"garbage;;;q=x,en;q=notanum": "en",
	}
	for accept, want := range cases {
		t.Run(accept, func(t *testing.T) {
			if got := language(accept); got != want {
				t.Errorf("language(%q) = %s, want %s", accept, got, want)
			}
		})
	}
}

func TestProfession(t *testing.T) {
	nl, en := &portalPage{Lang: "nl", msgs: messages["nl"]}, &portalPage{Lang: "en", msgs: messages["en"]}
	cases := []struct{ role, card, nl, en string }{
		{"01.015", "Z", "huisarts", "general practitioner"},
		{"01.004", "Z", "apotheekhoudend huisarts", "dispensing general practitioner"},
		{"17.075", "Z", "apotheker", "pharmacist"},
		{"17.000", "Z", "apotheker", "pharmacist"},
		{"01.010", "Z", "medisch specialist", "medical specialist"},
		{"01.008", "Z", "bedrijfsarts", "company doctor"},
		{"04.000", "Z", "fysiotherapeut", "physiotherapist"},
		{"00.000", "S", "systeem van de zorgaanbieder", "the care provider's system"},
		{"00.000", "N", "medewerker (geen zorgverlener)", "employee (not a care professional)"},
		{"99.123", "Z", "zorgverlener (rolcode 99.123)", "care professional (role code 99.123)"},
		{"", "", "onbekend", "unknown"},
	}
	for _, c := range cases {
		t.Run(c.role+c.card, func(t *testing.T) {
			if got := profession(c.role, c.card, nl); got != c.nl {
				t.Errorf("nl: %q, want %q", got, c.nl)
			}
			if got := profession(c.role, c.card, en); got != c.en {
				t.Errorf("en: %q, want %q", got, c.en)
			}
		})
	}
}

// TestMessagesComplete: every text exists in both languages.
func TestMessagesComplete(t *testing.T) {
	for lang, m := range messages {
		for other, om := range messages {
			for k := range m {
				if _, ok := om[k]; !ok {
					t.Errorf("%q is in %s but not in %s", k, lang, other)
				}
			}
		}
	}
}
