package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// withChain splices the link into the marshalled event: the result is
// byte for byte what marshalling the event with the link gives.
func TestWithChainSplice(t *testing.T) {
	permit := true
	for _, ev := range []Event{
		{ID: "plain", Interaction: "read", Status: 200},
		{ID: "ours", Interaction: "$verify", Status: 200, Agent: &Agent{UZINumber: "1", CardType: "Z", Role: "01.015", URA: "90000111"}},
		{ID: "html<&>", Interaction: "page", Status: 403, Description: "a<b", Permit: &permit},
	} {
		ev.Recorded = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
		ae := ev.build()
		content, err := json.Marshal(ae)
		if err != nil {
			t.Fatal(err)
		}
		for _, prev := range []string{"", "abc"} {
			spliced, err := withChain(ae, content, 7, prev, "def")
			if err != nil {
				t.Fatal(err)
			}
			marshalled, err := withChain(ae, nil, 7, prev, "def")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(spliced, marshalled) {
				t.Errorf("%s: spliced\n%s\nmarshalled\n%s", ev.ID, spliced, marshalled)
			}
			if !json.Valid(spliced) {
				t.Errorf("%s: invalid JSON %s", ev.ID, spliced)
			}
			canon, err := Canonical(spliced)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Canonical(content)
			if !bytes.Equal(canon, want) {
				t.Errorf("%s: canonical form changed by the link:\n%s\n%s", ev.ID, canon, want)
			}
		}
	}
}
