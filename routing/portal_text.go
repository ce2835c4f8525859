package routing

import (
	"strconv"
	"strings"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// language picks the portal's language from Accept-Language: Dutch
// unless English is preferred over it (by order and q-value).
func language(accept string) string {
	best, bestQ := "nl", -1.0
	for i, part := range strings.Split(accept, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		primary, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if primary != "nl" && primary != "en" || q <= 0 {
			continue
		}
		// Earlier entries win ties (browsers list by preference).
		if q > bestQ || (q == bestQ && i == 0) {
			best, bestQ = primary, q
		}
	}
	return best
}

// messages are the portal's texts, Dutch and English.
var messages = map[string]map[string]string{
	"nl": {
		"site":                           "Schakelpunt: uw gegevens",
		"skip":                           "Naar de inhoud",
		"nav":                            "Hoofdmenu",
		"nav-registrations":              "Aanmeldingen",
		"nav-log":                        "Wie keek er",
		"nav-consent":                    "Toestemming",
		"sign-out":                       "Afmelden",
		"sign-in-title":                  "Aanmelden",
		"sign-in-intro":                  "Meld u aan om te zien welke zorgaanbieders gegevens over u hebben aangemeld, wie ze heeft bekeken, en om uw toestemming te beheren.",
		"token-label":                    "Uw toegangstoken",
		"token-help":                     "Ontwikkelomgeving: maak een token met schakelpunt patient-token --bsn <uw BSN> en plak het hier.",
		"sign-in":                        "Aanmelden",
		"registrations-title":            "Aanmeldingen",
		"registrations-intro":            "Deze zorgaanbieders hebben bij het schakelpunt aangemeld dat zij gegevens over u hebben. De gegevens zelf blijven bij de zorgaanbieder.",
		"registrations-none":             "Er zijn geen aanmeldingen.",
		"col-organisation":               "Zorgaanbieder",
		"col-kind":                       "Soort gegevens",
		"col-since":                      "Aangemeld op",
		"col-date":                       "Datum en tijd",
		"col-profession":                 "Beroep",
		"col-outcome":                    "Resultaat",
		"col-status":                     "Status",
		"col-consent":                    "Delen via het schakelpunt",
		"col-change":                     "Wijzigen",
		"col-recorded-by":                "Vastgelegd door",
		"log-title":                      "Wie heeft uw gegevens bekeken",
		"log-intro":                      "Elke keer dat een zorgverlener of systeem uw gegevens opvraagt via het schakelpunt, wordt dat vastgelegd. Hieronder ziet u die opvragingen, de nieuwste eerst.",
		"log-caption":                    "Opvragingen van uw gegevens",
		"log-none":                       "Er zijn geen opvragingen in deze periode.",
		"log-truncated":                  "Alleen de nieuwste opvragingen worden getoond; kies een kortere periode om oudere te zien.",
		"filter":                         "Filter op datum",
		"from":                           "Vanaf",
		"to":                             "Tot en met",
		"apply":                          "Toon",
		"consent-title":                  "Toestemming",
		"consent-intro":                  "Per zorgaanbieder en soort gegevens ziet u of uw gegevens via het schakelpunt met andere zorgverleners gedeeld mogen worden. U kunt dit hier wijzigen; u krijgt eerst een bevestigingsvraag.",
		"consent-caption":                "Toestemming per zorgaanbieder en soort gegevens",
		"consent-none":                   "Er is nog geen zorgaanbieder die gegevens over u heeft aangemeld.",
		"consents-caption":               "Vastgelegde toestemmingen",
		"shared":                         "Ja, gedeeld",
		"not-shared":                     "Nee, niet gedeeld",
		"withdraw":                       "Toestemming intrekken",
		"give":                           "Toestemming geven",
		"for":                            "voor",
		"from-org":                       "van",
		"confirm-title":                  "Bevestig uw keuze",
		"confirm-withdraw":               "U trekt uw toestemming in. Zorgverleners kunnen deze gegevens dan niet meer via het schakelpunt opvragen:",
		"confirm-give":                   "U geeft toestemming. Zorgverleners die u behandelen kunnen deze gegevens dan via het schakelpunt opvragen:",
		"confirm-yes-withdraw":           "Ja, trek mijn toestemming in",
		"confirm-yes-give":               "Ja, geef toestemming",
		"cancel":                         "Nee, terug",
		"done-withdraw":                  "Uw toestemming is ingetrokken.",
		"done-give":                      "Uw toestemming is vastgelegd.",
		"done-still-excluded":            "Uw toestemming is vastgelegd, maar een andere toestemming sluit deze gegevens nog uit.",
		"by-you":                         "uzelf",
		"by-provider":                    "de zorgaanbieder",
		"status-active":                  "geldig",
		"status-inactive":                "ingetrokken",
		"status-rejected":                "geweigerd",
		"status-draft":                   "concept",
		"status-proposed":                "voorgesteld",
		"status-entered-in-error":        "vervallen (fout)",
		"cat-" + fhir.CategoryMedication: "medicatiegegevens",
		"cat-" + fhir.CategoryGPSummary:  "huisartsgegevens (samenvatting)",
		"kind-index":                     "aanmelding bij het schakelpunt",
		"kind-consent":                   "toestemming",
		"kind-log":                       "het logboek",
		"kind-other":                     "overige",
		"outcome-ok":                     "gelukt",
		"outcome-denied":                 "geweigerd",
		"outcome-refused":                "afgewezen (fout verzoek)",
		"outcome-failed":                 "mislukt",
		"unknown-organisation":           "onbekende organisatie",
		"organisation-ura":               "zorgaanbieder URA",
		"session-ended":                  "Uw sessie is verlopen. Meld u opnieuw aan.",
		"bad-token":                      "Dit token wordt niet geaccepteerd (verlopen, ongeldig of niet voor deze dienst).",
		"csrf":                           "Dit formulier is verlopen of kwam niet van deze site. Probeer het opnieuw.",
		"bad-request":                    "Dit verzoek kan niet worden verwerkt.",
		"bad-date":                       "Vul een geldige datum in (jjjj-mm-dd).",
		"internal-error":                 "Er ging iets mis. Probeer het later opnieuw.",
		"back":                           "Terug naar het overzicht",
	},
	"en": {
		"site":                           "Schakelpunt: your data",
		"skip":                           "Skip to content",
		"nav":                            "Main menu",
		"nav-registrations":              "Registrations",
		"nav-log":                        "Who looked",
		"nav-consent":                    "Consent",
		"sign-out":                       "Sign out",
		"sign-in-title":                  "Sign in",
		"sign-in-intro":                  "Sign in to see which care providers registered data about you, who looked at it, and to manage your consent.",
		"token-label":                    "Your access token",
		"token-help":                     "Development: make a token with schakelpunt patient-token --bsn <your BSN> and paste it here.",
		"sign-in":                        "Sign in",
		"registrations-title":            "Registrations",
		"registrations-intro":            "These care providers registered at the switching point that they hold data about you. The data itself stays with the care provider.",
		"registrations-none":             "There are no registrations.",
		"col-organisation":               "Care provider",
		"col-kind":                       "Kind of data",
		"col-since":                      "Registered on",
		"col-date":                       "Date and time",
		"col-profession":                 "Profession",
		"col-outcome":                    "Outcome",
		"col-status":                     "Status",
		"col-consent":                    "Shared through the switching point",
		"col-change":                     "Change",
		"col-recorded-by":                "Recorded by",
		"log-title":                      "Who looked at your data",
		"log-intro":                      "Every time a care professional or system asks for your data through the switching point, it is recorded. These are those requests, newest first.",
		"log-caption":                    "Requests for your data",
		"log-none":                       "There are no requests in this period.",
		"log-truncated":                  "Only the newest requests are shown; choose a shorter period to see older ones.",
		"filter":                         "Filter by date",
		"from":                           "From",
		"to":                             "Up to and including",
		"apply":                          "Show",
		"consent-title":                  "Consent",
		"consent-intro":                  "For each care provider and kind of data you see whether your data may be shared with other care professionals through the switching point. You can change it here; you will be asked to confirm first.",
		"consent-caption":                "Consent per care provider and kind of data",
		"consent-none":                   "No care provider has registered data about you yet.",
		"consents-caption":               "Recorded consents",
		"shared":                         "Yes, shared",
		"not-shared":                     "No, not shared",
		"withdraw":                       "Withdraw consent",
		"give":                           "Give consent",
		"for":                            "for",
		"from-org":                       "from",
		"confirm-title":                  "Confirm your choice",
		"confirm-withdraw":               "You are withdrawing your consent. Care professionals can then no longer request this data through the switching point:",
		"confirm-give":                   "You are giving consent. Care professionals who treat you can then request this data through the switching point:",
		"confirm-yes-withdraw":           "Yes, withdraw my consent",
		"confirm-yes-give":               "Yes, give consent",
		"cancel":                         "No, go back",
		"done-withdraw":                  "Your consent has been withdrawn.",
		"done-give":                      "Your consent has been recorded.",
		"done-still-excluded":            "Your consent has been recorded, but another consent still excludes this data.",
		"by-you":                         "you",
		"by-provider":                    "the care provider",
		"status-active":                  "in force",
		"status-inactive":                "withdrawn",
		"status-rejected":                "refused",
		"status-draft":                   "draft",
		"status-proposed":                "proposed",
		"status-entered-in-error":        "void (error)",
		"cat-" + fhir.CategoryMedication: "medication",
		"cat-" + fhir.CategoryGPSummary:  "GP summary",
		"kind-index":                     "registration at the switching point",
		"kind-consent":                   "consent",
		"kind-log":                       "the access log",
		"kind-other":                     "other",
		"outcome-ok":                     "succeeded",
		"outcome-denied":                 "denied",
		"outcome-refused":                "refused (bad request)",
		"outcome-failed":                 "failed",
		"unknown-organisation":           "unknown organisation",
		"organisation-ura":               "care provider URA",
		"session-ended":                  "Your session has ended. Please sign in again.",
		"bad-token":                      "This token is not accepted (expired, invalid or not for this service).",
		"csrf":                           "This form has expired or did not come from this site. Please try again.",
		"bad-request":                    "This request cannot be processed.",
		"bad-date":                       "Enter a valid date (yyyy-mm-dd).",
		"internal-error":                 "Something went wrong. Please try again later.",
		"back":                           "Back to the overview",
	},
}

// professions name UZI role codes in words, Dutch and English; a pattern
// with x matches any digit, the first match wins.
var professions = []struct{ role, nl, en string }{
	{"01.015", "huisarts", "general practitioner"},
	{"01.004", "apotheekhoudend huisarts", "dispensing general practitioner"},
	{"01.000", "arts", "physician"},
	{"01.008", "bedrijfsarts", "company doctor"},
	{"01.048", "verzekeringsarts", "insurance doctor"},
	{"01.055", "arts maatschappij en gezondheid", "public health physician"},
	{"01.047", "specialist ouderengeneeskunde", "elderly care physician"},
	{"01.056", "arts verstandelijk gehandicapten", "physician for people with intellectual disabilities"},
	{"01.0xx", "medisch specialist", "medical specialist"},
	{"17.xxx", "apotheker", "pharmacist"},
	{"02.000", "tandarts", "dentist"},
	{"03.000", "verloskundige", "midwife"},
	{"04.000", "fysiotherapeut", "physiotherapist"},
	{"16.000", "psychotherapeut", "psychotherapist"},
	{"25.000", "gezondheidszorgpsycholoog", "healthcare psychologist"},
	{"30.000", "verpleegkundige", "nurse"},
}

// profession is a role code (and, for role 00.000, the card type) in
// words.
func profession(role, card string, pg *portalPage) string {
	en := pg.Lang == "en"
	pick := func(nl, eng string) string {
		if en {
			return eng
		}
		return nl
	}
	switch {
	case role == "":
		return pick("onbekend", "unknown")
	case role == "00.000" && card == "S":
		return pick("systeem van de zorgaanbieder", "the care provider's system")
	case role == "00.000":
		return pick("medewerker (geen zorgverlener)", "employee (not a care professional)")
	}
	for _, p := range professions {
		if roleMatches(p.role, role) {
			return pick(p.nl, p.en)
		}
	}
	return pick("zorgverlener (rolcode ", "care professional (role code ") + role + ")"
}

// roleMatches reports whether role matches pattern, x matching any digit.
func roleMatches(pattern, role string) bool {
	if len(pattern) != len(role) {
		return false
	}
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != role[i] && !(pattern[i] == 'x' && role[i] >= '0' && role[i] <= '9') {
			return false
		}
	}
	return true
}

// kindOfData names what a logged request was about: its data category
// when it had one, else the resource it asked for.
func kindOfData(category, resource string, pg *portalPage) string {
	if category != "" {
		return pg.T("cat-" + category)
	}
	switch resource {
	case "MedicationDispense":
		return pg.T("cat-" + fhir.CategoryMedication)
	case "$summary":
		return pg.T("cat-" + fhir.CategoryGPSummary)
	case "Patient":
		return pg.T("kind-index")
	case "Consent":
		return pg.T("kind-consent")
	case "AuditEvent":
		return pg.T("kind-log")
	}
	return pg.T("kind-other")
}
