package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/store"
)

// DefaultAuditPurgeEvents is how many events the purge test writes by
// default, all but 200 of them past the cutoff: more than an adapter
// removes in one commit (the SQLite adapter's chunk is 2000), so that a
// purge spans several.
const DefaultAuditPurgeEvents = 2500

// AuditOptions tune RunAuditWith.
type AuditOptions struct {
	// PurgeEvents is how many events the purge test writes (default
	// DefaultAuditPurgeEvents); all but 200 are purged, which must be more
	// than the adapter removes in one commit. An adapter whose test lowers
	// its chunk may lower this too, and keep the suite fast under -race.
	PurgeEvents int
}

// RunAudit runs the contract suite of store.AuditLog with the default
// options. h.Open must return a store that also implements
// store.AuditLog; h.Reopen, when set, runs the durability test.
//
//	func TestAuditContract(t *testing.T) {
//		storetest.RunAudit(t, storetest.Harness{Open: mustOpen, Reopen: mustReopen})
//	}
//
// The suite does not compute real chain hashes (package audit does): the
// store keeps Seq, Prev and Hash as given and checks only that each record
// follows the head.
func RunAudit(t *testing.T, h Harness) {
	RunAuditWith(t, h, AuditOptions{})
}

// RunAuditWith runs the contract suite of store.AuditLog (see RunAudit).
func RunAuditWith(t *testing.T, h Harness, opts AuditOptions) {
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is required")
	}
	if opts.PurgeEvents <= 0 {
		opts.PurgeEvents = DefaultAuditPurgeEvents
	}
	if opts.PurgeEvents < 400 {
		t.Fatalf("storetest: AuditOptions.PurgeEvents %d is too few (at least 400)", opts.PurgeEvents)
	}
	for _, tc := range []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"EmptyHead", testAuditEmpty},
		{"AppendOne", testAuditAppendOne},
		{"AppendMany", testAuditAppendMany},
		{"AppendRefused", testAuditRefused},
		{"ConcurrentAppend", testAuditConcurrent},
		{"Search", testAuditSearch},
		{"Scan", testAuditScan},
		{"Purge", func(t *testing.T, h Harness) { testAuditPurge(t, h, opts.PurgeEvents) }},
		{"PurgeKeepsChainContiguous", testAuditPurgePrefix},
		{"Closed", testAuditClosed},
		{"Reopen", testAuditReopen},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// openAudit opens a fresh store that is also an AuditLog.
func openAudit(t *testing.T, h Harness) (store.Store, store.AuditLog) {
	t.Helper()
	s := open(t, h)
	al, ok := s.(store.AuditLog)
	if !ok {
		t.Fatalf("storetest: %T does not implement store.AuditLog", s)
	}
	return s, al
}

// auditBase is when the suite's events happen (recorded times are
// auditBase + seq seconds unless a test says otherwise).
var auditBase = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

// Patients and professionals of the suite's events.
var (
	auditPatients = []string{"999911120", "999900006", "999900018"}
	auditUZIs     = []string{"11111111", "22222222"}
)

// chain hands out records that follow one another, as package audit does
// (with stand-in hashes).
type chain struct {
	t    testing.TB
	seq  int64
	prev string
	// recorded gives the recorded time of the event with seq; nil:
	// auditBase + seq seconds.
	recorded func(seq int64) time.Time
}

// chainAt continues the chain after head.
func chainAt(t testing.TB, head store.ChainHead) *chain {
	return &chain{t: t, seq: head.Seq, prev: head.Hash}
}

func (c *chain) head() store.ChainHead { return store.ChainHead{Seq: c.seq, Hash: c.prev} }

// next returns n records following the chain's head and advances it.
func (c *chain) next(n int) []store.AuditRecord {
	recs := make([]store.AuditRecord, n)
	for i := range recs {
		c.seq++
		at := auditBase.Add(time.Duration(c.seq) * time.Second)
		if c.recorded != nil {
			at = c.recorded(c.seq)
		}
		recs[i] = auditRecord(c.t, c.seq, c.prev, at)
		c.prev = recs[i].Hash
	}
	return recs
}

// auditID is the id of the suite's event with seq.
func auditID(seq int64) string { return "ae-" + strconv.FormatInt(seq, 10) }

// auditPatient is the patient of the suite's event with seq.
func auditPatient(seq int64) string { return auditPatients[seq%int64(len(auditPatients))] }

// NewAuditRecords returns n records that follow head: AuditEvents in the
// shape package audit writes (a professional searching a patient's
// medication) with stand-in hashes, recorded a second apart. For adapter
// tests and benchmarks of their own.
func NewAuditRecords(tb testing.TB, head store.ChainHead, n int) []store.AuditRecord {
	return chainAt(tb, head).next(n)
}

// auditRecord is an event in the BALP shape package audit writes: a
// professional searching a patient's medication, with its chain link.
func auditRecord(t testing.TB, seq int64, prev string, recorded time.Time) store.AuditRecord {
	sum := sha256.Sum256([]byte(prev + "\n" + auditID(seq)))
	hash := hex.EncodeToString(sum[:])
	uzi := auditUZIs[seq%int64(len(auditUZIs))]
	outcome := "0"
	if seq%5 == 0 {
		outcome = "4"
	}
	link := `{"url":"seq","valueString":"` + strconv.FormatInt(seq, 10) + `"},`
	if prev != "" {
		link += `{"url":"previous","valueString":"` + prev + `"},`
	}
	link += `{"url":"hash","valueString":"` + hash + `"}`
	body := `{"resourceType":"AuditEvent","id":"` + auditID(seq) + `",` +
		`"extension":[{"url":"http://schakelpunt.nl/fhir/StructureDefinition/audit-chain","extension":[` + link + `]}],` +
		`"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},` +
		`"subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":"search-type"}],` +
		`"action":"E","recorded":"` + recorded.UTC().Format("2006-01-02T15:04:05.000Z07:00") + `","outcome":"` + outcome + `",` +
		`"purposeOfEvent":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}],` +
		`"agent":[{"who":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/uzi-nr-pers","value":"` + uzi + `"}},` +
		`"role":[{"coding":[{"system":"http://fhir.nl/fhir/NamingSystem/uzi-rolcode","code":"01.015"}]}],"requestor":true},` +
		`{"who":{"type":"Organization","identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"90000111"}},"requestor":false}],` +
		`"source":{"observer":{"display":"Schakelpunt"},"type":[{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4"}]},` +
		`"entity":[{"what":{"type":"Patient","identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + auditPatient(seq) + `"}},` +
		`"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1"},` +
		`"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1"}}]}`
	return store.AuditRecord{Seq: seq, Prev: prev, Hash: hash, Recorded: recorded,
		Write: NewWrite(t, "AuditEvent", auditID(seq), body)}
}

// appendAll appends n records in calls of at most per records.
func appendAll(t *testing.T, al store.AuditLog, c *chain, n, per int) {
	t.Helper()
	for n > 0 {
		k := min(n, per)
		if err := al.AppendAudit(context.Background(), c.next(k)); err != nil {
			t.Fatalf("AppendAudit of %d records after %d: %v", k, c.seq-int64(k), err)
		}
		n -= k
	}
}

// scanAll returns every entry after seq, following ScanAudit in pages.
func scanAll(t *testing.T, al store.AuditLog, after int64) []store.AuditEntry {
	t.Helper()
	var out []store.AuditEntry
	for {
		page, err := al.ScanAudit(context.Background(), after, 500)
		if err != nil {
			t.Fatalf("ScanAudit(%d, 500): %v", after, err)
		}
		out = append(out, page...)
		if len(page) < 500 {
			return out
		}
		after = page[len(page)-1].Seq
	}
}

func wantHead(t *testing.T, al store.AuditLog, want store.ChainHead) {
	t.Helper()
	got, err := al.AuditHead(context.Background())
	if err != nil {
		t.Fatalf("AuditHead: %v", err)
	}
	if got != want {
		t.Fatalf("AuditHead = %d %.12s, want %d %.12s", got.Seq, got.Hash, want.Seq, want.Hash)
	}
}

func wantCheckpoint(t *testing.T, al store.AuditLog, want store.ChainHead) {
	t.Helper()
	got, err := al.AuditCheckpoint(context.Background())
	if err != nil {
		t.Fatalf("AuditCheckpoint: %v", err)
	}
	if got != want {
		t.Fatalf("AuditCheckpoint = %d %.12s, want %d %.12s", got.Seq, got.Hash, want.Seq, want.Hash)
	}
}

// wantChain checks that the log holds exactly the events first..last,
// each as appended: its link, and its resource as Read returns it.
func wantChain(t *testing.T, s store.Store, al store.AuditLog, first, last int64, recs map[int64]store.AuditRecord) {
	t.Helper()
	entries := scanAll(t, al, 0)
	var seqs []int64
	for _, e := range entries {
		seqs = append(seqs, e.Seq)
	}
	var want []int64
	for seq := first; seq <= last && first > 0; seq++ {
		want = append(want, seq)
	}
	if !slices.Equal(seqs, want) {
		t.Fatalf("ScanAudit(0) gives seqs %v, want %d..%d", compact(seqs), first, last)
	}
	for _, e := range entries {
		r, ok := recs[e.Seq]
		if !ok {
			continue
		}
		if e.Prev != r.Prev || e.Hash != r.Hash {
			t.Fatalf("entry %d: link %.12s→%.12s, appended %.12s→%.12s", e.Seq, e.Prev, e.Hash, r.Prev, r.Hash)
		}
		checkResource(t, e.Resource, "AuditEvent", r.Write.ID)
		checkMeta(t, e.Resource)
		want, _, err := store.Stamp(r.Write, e.Resource.Version, e.Resource.Updated)
		if err != nil {
			t.Fatal(err)
		}
		if string(e.Resource.Body) != string(want.Body) {
			t.Fatalf("entry %d: body\n got %s\nwant %s (store.Stamp)", e.Seq, e.Resource.Body, want.Body)
		}
		got, err := s.Read(context.Background(), "AuditEvent", r.Write.ID)
		if err != nil {
			t.Fatalf("Read AuditEvent/%s: %v", r.Write.ID, err)
		}
		if !sameResource(got, e.Resource) {
			t.Fatalf("entry %d: ScanAudit gives %s, Read %s", e.Seq, show(e.Resource), show(got))
		}
	}
}

// compact renders a list of seqs briefly.
func compact(seqs []int64) string {
	if len(seqs) <= 12 {
		return fmt.Sprint(seqs)
	}
	return fmt.Sprintf("%v … %v (%d)", seqs[:5], seqs[len(seqs)-5:], len(seqs))
}

func byseq(recs ...[]store.AuditRecord) map[int64]store.AuditRecord {
	m := map[int64]store.AuditRecord{}
	for _, rs := range recs {
		for _, r := range rs {
			m[r.Seq] = r
		}
	}
	return m
}

// An empty log has a zero head and checkpoint and nothing to scan or
// purge.
func testAuditEmpty(t *testing.T, h Harness) {
	_, al := openAudit(t, h)
	ctx := context.Background()
	wantHead(t, al, store.ChainHead{})
	wantCheckpoint(t, al, store.ChainHead{})
	if got, err := al.ScanAudit(ctx, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("ScanAudit of an empty log: %d entries, %v", len(got), err)
	}
	if n, err := al.PurgeAudit(ctx, auditBase.AddDate(10, 0, 0)); err != nil || n != 0 {
		t.Fatalf("PurgeAudit of an empty log: %d, %v", n, err)
	}
	wantCheckpoint(t, al, store.ChainHead{})
	if err := al.AppendAudit(ctx, nil); err != nil {
		t.Fatalf("AppendAudit of no records: %v", err)
	}
	wantHead(t, al, store.ChainHead{})
}

// One record: the head moves to it, it is scanned and read back as the
// AuditEvent resource store.Stamp makes of it.
func testAuditAppendOne(t *testing.T, h Harness) {
	s, al := openAudit(t, h)
	c := chainAt(t, store.ChainHead{})
	recs := c.next(1)
	if recs[0].Prev != "" {
		t.Fatal("the first record has a previous link")
	}
	if err := al.AppendAudit(context.Background(), recs); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	wantHead(t, al, c.head())
	wantCheckpoint(t, al, store.ChainHead{})
	wantChain(t, s, al, 1, 1, byseq(recs))
	r, err := s.Read(context.Background(), "AuditEvent", auditID(1))
	if err != nil || r.Version != 1 {
		t.Fatalf("Read AuditEvent/%s: version %d, %v", auditID(1), r.Version, err)
	}
}

// Several calls, several records per call, one big call: the chain grows
// without gaps and the head follows.
func testAuditAppendMany(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name  string
		calls []int // records per call
	}{
		{"one by one", []int{1, 1, 1, 1, 1}},
		{"several per call", []int{3, 1, 7, 2}},
		{"one call", []int{200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, al := openAudit(t, h)
			c := chainAt(t, store.ChainHead{})
			all := map[int64]store.AuditRecord{}
			for _, n := range tc.calls {
				recs := c.next(n)
				if err := al.AppendAudit(context.Background(), recs); err != nil {
					t.Fatalf("AppendAudit of %d: %v", n, err)
				}
				for _, r := range recs {
					all[r.Seq] = r
				}
				wantHead(t, al, c.head())
			}
			wantChain(t, s, al, 1, c.seq, all)
		})
	}
}

// A batch that does not follow the head, or does not hang together, is
// refused whole: ErrChainConflict (any error for a taken id), nothing
// stored, not even the good records before the bad one, and the log
// goes on from where it was.
func testAuditRefused(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name     string
		spoil    func(recs []store.AuditRecord, head store.ChainHead) []store.AuditRecord
		conflict bool // the error must be ErrChainConflict
	}{
		{"first seq skips one", func(recs []store.AuditRecord, _ store.ChainHead) []store.AuditRecord {
			return renumber(recs, 1)
		}, true},
		{"first seq repeats the head", func(recs []store.AuditRecord, _ store.ChainHead) []store.AuditRecord {
			return renumber(recs, -1)
		}, true},
		{"first prev is not the head", func(recs []store.AuditRecord, _ store.ChainHead) []store.AuditRecord {
			recs[0].Prev = "0000"
			return recs
		}, true},
		{"first prev empty on a non-empty log", func(recs []store.AuditRecord, _ store.ChainHead) []store.AuditRecord {
			recs[0].Prev = ""
			return recs
		}, true},
		{"third seq skips one", func(recs []store.AuditRecord, _ store.ChainHead) []store.AuditRecord {
			recs[2].Seq++
			return recs
		}, true},
		{"third seq repeats the second", func(recs []store.AuditRecord, _ store.ChainHead) []store.AuditRecord {
			recs[2].Seq--
			return recs
		}, true},
		{"third prev is not the second's hash", func(recs []store.AuditRecord, _ store.ChainHead) []store.AuditRecord {
			recs[2].Prev = recs[0].Hash
			return recs
		}, true},
		{"third id is the first's", func(recs []store.AuditRecord, _ store.ChainHead) []store.AuditRecord {
			recs[2].Write.ID = recs[0].Write.ID
			return recs
		}, false},
		{"third id is taken by a stored event", func(recs []store.AuditRecord, _ store.ChainHead) []store.AuditRecord {
			recs[2].Write.ID = auditID(1)
			return recs
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, al := openAudit(t, h)
			ctx := context.Background()
			c := chainAt(t, store.ChainHead{})
			stored := c.next(3)
			if err := al.AppendAudit(ctx, stored); err != nil {
				t.Fatal(err)
			}
			head := c.head()
			recs := c.next(4)
			ids := make([]string, len(recs))
			for i, r := range recs {
				ids[i] = r.Write.ID
			}
			bad := tc.spoil(slices.Clone(recs), head)
			err := al.AppendAudit(ctx, bad)
			switch {
			case err == nil:
				t.Fatal("AppendAudit accepted a broken batch")
			case tc.conflict && !errors.Is(err, store.ErrChainConflict):
				t.Fatalf("AppendAudit: %v, want ErrChainConflict", err)
			}
			// Nothing of the batch is stored.
			wantHead(t, al, head)
			wantChain(t, s, al, 1, 3, byseq(stored))
			for _, id := range ids {
				if _, err := s.Read(ctx, "AuditEvent", id); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("Read AuditEvent/%s of the refused batch: %v, want ErrNotFound", id, err)
				}
			}
			q := parseQuery(t, "AuditEvent", "")
			if n, err := s.Count(ctx, q); err != nil || n != 3 {
				t.Fatalf("Count of AuditEvents = %d, %v; want the 3 stored before", n, err)
			}
			// The log goes on from its head.
			if err := al.AppendAudit(ctx, recs); err != nil {
				t.Fatalf("AppendAudit of the good batch after the refusal: %v", err)
			}
			wantHead(t, al, c.head())
			wantChain(t, s, al, 1, 7, byseq(stored, recs))
		})
	}
}

// renumber shifts every record's Seq by d, keeping the links.
func renumber(recs []store.AuditRecord, d int64) []store.AuditRecord {
	for i := range recs {
		recs[i].Seq += d
	}
	return recs
}

// Writers racing for the same head: exactly one wins each seq, the others
// get ErrChainConflict, and writers that reload the head and retry build
// one chain without gaps or forks.
func testAuditConcurrent(t *testing.T, h Harness) {
	s, al := openAudit(t, h)
	ctx := context.Background()
	const writers = 8

	// One head, many candidates.
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := auditRecord(t, 1, "", auditBase)
			rec.Write = NewWrite(t, "AuditEvent", fmt.Sprintf("race-%d", w), string(rec.Write.Body))
			errs[w] = al.AppendAudit(ctx, []store.AuditRecord{rec})
		}()
	}
	wg.Wait()
	won := 0
	for w, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrChainConflict):
			t.Fatalf("writer %d: %v, want nil or ErrChainConflict", w, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers appended seq 1, want exactly 1", won)
	}
	if n, err := s.Count(ctx, parseQuery(t, "AuditEvent", "")); err != nil || n != 1 {
		t.Fatalf("Count of AuditEvents = %d, %v; want 1", n, err)
	}

	// Retrying writers: each appends batches of 3 until it has 5 in.
	const perWriter = 5
	var mu sync.Mutex
	appended := map[int64]store.AuditRecord{}
	errCh := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done, tries := 0, 0; done < perWriter; tries++ {
				if tries > 1000 {
					errCh <- fmt.Errorf("writer %d: no progress after %d tries", w, tries)
					return
				}
				head, err := al.AuditHead(ctx)
				if err != nil {
					errCh <- err
					return
				}
				c := &chain{t: t, seq: head.Seq, prev: head.Hash}
				recs := c.next(3)
				for i := range recs {
					recs[i].Write.ID = fmt.Sprintf("w%d-%d-%d", w, done, i)
				}
				err = al.AppendAudit(ctx, recs)
				switch {
				case errors.Is(err, store.ErrChainConflict):
					continue
				case err != nil:
					errCh <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				mu.Lock()
				for _, r := range recs {
					if _, dup := appended[r.Seq]; dup {
						mu.Unlock()
						errCh <- fmt.Errorf("seq %d appended twice", r.Seq)
						return
					}
					appended[r.Seq] = r
				}
				mu.Unlock()
				done++
			}
		}()
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Fatal(err)
	}
	last := int64(1 + writers*perWriter*3)
	entries := scanAll(t, al, 0)
	if len(entries) != int(last) {
		t.Fatalf("%d entries, want %d", len(entries), last)
	}
	prev := ""
	for i, e := range entries {
		if e.Seq != int64(i+1) || e.Prev != prev {
			t.Fatalf("entry %d: seq %d prev %.12s, want seq %d prev %.12s: the chain forked or has a gap", i, e.Seq, e.Prev, i+1, prev)
		}
		if r, ok := appended[e.Seq]; ok && (r.Hash != e.Hash || r.Write.ID != e.Resource.ID) {
			t.Fatalf("entry %d is %s, the writer that won it appended %s", e.Seq, e.Resource.ID, r.Write.ID)
		}
		prev = e.Hash
	}
	wantHead(t, al, store.ChainHead{Seq: last, Hash: prev})
}

// Audit events are ordinary AuditEvent resources for Search, with the
// terms their writer computed.
func testAuditSearch(t *testing.T, h Harness) {
	s, al := openAudit(t, h)
	c := chainAt(t, store.ChainHead{})
	recs := c.next(30)
	if err := al.AppendAudit(context.Background(), recs[:10]); err != nil {
		t.Fatal(err)
	}
	if err := al.AppendAudit(context.Background(), recs[10:]); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, s)
	for _, r := range recs {
		got, err := s.Read(context.Background(), "AuditEvent", r.Write.ID)
		if err != nil {
			t.Fatal(err)
		}
		w.record(r.Write, got)
	}
	for _, q := range []string{
		"patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + auditPatients[0],
		"patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + auditPatients[1] + "&_sort=-date",
		"agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|" + auditUZIs[1],
		"agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|" + auditUZIs[0] + "&outcome=4",
		"date=ge" + auditBase.Add(10*time.Second).Format(time.RFC3339) + "&date=lt" + auditBase.Add(20*time.Second).Format(time.RFC3339),
		"subtype=search-type&_sort=date",
		"type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest&outcome=0&_sort=-date",
		"patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900031", // nobody
		"_sort=-date",
	} {
		t.Run(q, func(t *testing.T) {
			ids := w.check(parseQuery(t, "AuditEvent", q), 7, 1000)
			if q != "patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900031" && len(ids) == 0 {
				t.Fatalf("%s finds nothing: the fixture is wrong", q)
			}
		})
	}
}

// ScanAudit: in Seq order, at most limit, strictly after after.
func testAuditScan(t *testing.T, h Harness) {
	_, al := openAudit(t, h)
	c := chainAt(t, store.ChainHead{})
	appendAll(t, al, c, 10, 4)
	for _, tc := range []struct {
		after int64
		limit int
		want  []int64
	}{
		{0, 3, []int64{1, 2, 3}},
		{3, 3, []int64{4, 5, 6}},
		{0, 100, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{8, 5, []int64{9, 10}},
		{9, 1, []int64{10}},
		{10, 5, nil},
		{42, 5, nil},
	} {
		t.Run(fmt.Sprintf("after %d limit %d", tc.after, tc.limit), func(t *testing.T) {
			got, err := al.ScanAudit(context.Background(), tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, e := range got {
				seqs = append(seqs, e.Seq)
				if e.Resource.ID != auditID(e.Seq) || e.Resource.Type != "AuditEvent" {
					t.Fatalf("entry %d is %s/%s", e.Seq, e.Resource.Type, e.Resource.ID)
				}
			}
			if !slices.Equal(seqs, tc.want) {
				t.Fatalf("seqs %v, want %v", seqs, tc.want)
			}
		})
	}
}

// PurgeAudit removes the events recorded before the cutoff from the start
// of the chain, over several commits, leaves the head alone and moves the
// checkpoint to the last event removed. Purged events are gone for Read,
// Search and ScanAudit; the chain goes on.
func testAuditPurge(t *testing.T, h Harness, total int) {
	s, al := openAudit(t, h)
	ctx := context.Background()
	old := total - 200
	c := chainAt(t, store.ChainHead{})
	var all []store.AuditRecord
	for len(all) < total {
		recs := c.next(min(250, total-len(all)))
		if err := al.AppendAudit(ctx, recs); err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	head := c.head()
	// Events are recorded a second apart: the cutoff falls between the
	// old-th and the next.
	cutoff := all[old-1].Recorded.Add(time.Second / 2)
	n, err := al.PurgeAudit(ctx, cutoff)
	if err != nil {
		t.Fatalf("PurgeAudit: %v", err)
	}
	if n != old {
		t.Fatalf("PurgeAudit removed %d, want %d", n, old)
	}
	wantHead(t, al, head)
	wantCheckpoint(t, al, store.ChainHead{Seq: int64(old), Hash: all[old-1].Hash})
	wantChain(t, s, al, int64(old+1), int64(total), byseq(all[old:]))
	for _, r := range []store.AuditRecord{all[0], all[old/2], all[old-1]} {
		_, err := s.Read(ctx, "AuditEvent", r.Write.ID)
		if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrGone) {
			t.Fatalf("Read of purged AuditEvent/%s: %v, want ErrNotFound or ErrGone", r.Write.ID, err)
		}
	}
	if _, err := s.Read(ctx, "AuditEvent", all[old].Write.ID); err != nil {
		t.Fatalf("Read of kept AuditEvent/%s: %v", all[old].Write.ID, err)
	}
	for _, q := range []string{
		"",
		"patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + auditPatients[0],
		"agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|" + auditUZIs[0],
		"date=lt" + cutoff.Format(time.RFC3339Nano),
		"subtype=search-type",
	} {
		page, err := s.Search(ctx, store.Query{Type: "AuditEvent", Clauses: parseQuery(t, "AuditEvent", q).Clauses, Limit: total})
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		for _, r := range page.Resources {
			seq, _ := strconv.ParseInt(r.ID[len("ae-"):], 10, 64)
			if seq <= int64(old) {
				t.Fatalf("search %q finds purged %s", q, r.ID)
			}
		}
		if q == "" && len(page.Resources) != total-old {
			t.Fatalf("search of all AuditEvents finds %d, want %d", len(page.Resources), total-old)
		}
	}

	// Nothing more is old: a second purge removes nothing.
	if n, err := al.PurgeAudit(ctx, cutoff); err != nil || n != 0 {
		t.Fatalf("second PurgeAudit: %d, %v; want 0", n, err)
	}
	wantCheckpoint(t, al, store.ChainHead{Seq: int64(old), Hash: all[old-1].Hash})

	// The chain goes on from the head.
	more := c.next(3)
	if err := al.AppendAudit(ctx, more); err != nil {
		t.Fatalf("AppendAudit after a purge: %v", err)
	}
	wantHead(t, al, c.head())

	// Purging everything leaves the checkpoint at the head, which stays.
	last := c.head()
	n, err = al.PurgeAudit(ctx, auditBase.AddDate(1, 0, 0))
	if err != nil || n != total-old+3 {
		t.Fatalf("PurgeAudit of everything: %d, %v; want %d", n, err, total-old+3)
	}
	wantCheckpoint(t, al, last)
	wantHead(t, al, last)
	wantChain(t, s, al, 0, -1, nil)
	if err := al.AppendAudit(ctx, c.next(1)); err != nil {
		t.Fatalf("AppendAudit after purging everything: %v", err)
	}
	wantHead(t, al, c.head())
	wantChain(t, s, al, c.seq, c.seq, nil)
}

// Recorded times need not follow the chain (instances' clocks differ): a
// purge removes old events from the start of the chain only, so that what
// is left runs without gaps from the checkpoint to the head.
func testAuditPurgePrefix(t *testing.T, h Harness) {
	s, al := openAudit(t, h)
	ctx := context.Background()
	cutoff := auditBase.Add(time.Hour)
	// Events 1-4 old, 5 new, 6 old again (a slow clock), 7-8 new.
	c := chainAt(t, store.ChainHead{})
	c.recorded = func(seq int64) time.Time {
		if seq <= 4 || seq == 6 {
			return auditBase.Add(time.Duration(seq) * time.Second)
		}
		return cutoff.Add(time.Duration(seq) * time.Second)
	}
	recs := c.next(8)
	if err := al.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	n, err := al.PurgeAudit(ctx, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("PurgeAudit removed %d, want 4 (the old events before the first new one)", n)
	}
	wantCheckpoint(t, al, store.ChainHead{Seq: 4, Hash: recs[3].Hash})
	wantChain(t, s, al, 5, 8, byseq(recs))
	wantHead(t, al, c.head())
}

// After Close the audit calls fail with ErrClosed.
func testAuditClosed(t *testing.T, h Harness) {
	s, al := openAudit(t, h)
	ctx := context.Background()
	c := chainAt(t, store.ChainHead{})
	appendAll(t, al, c, 2, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"AppendAudit", func() error { return al.AppendAudit(ctx, c.next(1)) }},
		{"AuditHead", func() error { _, err := al.AuditHead(ctx); return err }},
		{"AuditCheckpoint", func() error { _, err := al.AuditCheckpoint(ctx); return err }},
		{"ScanAudit", func() error { _, err := al.ScanAudit(ctx, 0, 10); return err }},
		{"PurgeAudit", func() error { _, err := al.PurgeAudit(ctx, auditBase.AddDate(1, 0, 0)); return err }},
	} {
		if err := tc.call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", tc.name, err)
		}
	}
}

// A restart keeps the chain: head, checkpoint and events, and the chain
// goes on from where it was.
func testAuditReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Fatal("the harness has no Reopen: the chain surviving a restart is part of the contract")
	}
	s, al := openAudit(t, h)
	ctx := context.Background()
	c := chainAt(t, store.ChainHead{})
	var all []store.AuditRecord
	for range 3 {
		recs := c.next(4)
		if err := al.AppendAudit(ctx, recs); err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	if n, err := al.PurgeAudit(ctx, all[2].Recorded.Add(time.Millisecond)); err != nil || n != 3 {
		t.Fatalf("PurgeAudit: %d, %v; want 3", n, err)
	}
	head := c.head()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = h.Reopen(t, s)
	t.Cleanup(func() { _ = s.Close() })
	al, ok := s.(store.AuditLog)
	if !ok {
		t.Fatalf("storetest: reopened %T does not implement store.AuditLog", s)
	}
	wantHead(t, al, head)
	wantCheckpoint(t, al, store.ChainHead{Seq: 3, Hash: all[2].Hash})
	wantChain(t, s, al, 4, 12, byseq(all))
	// A writer that kept the old head (another instance) is refused; one
	// that follows the head goes on.
	stale := chainAt(t, store.ChainHead{Seq: 11, Hash: all[10].Hash}).next(1)
	stale[0].Write.ID = "stale"
	if err := al.AppendAudit(ctx, stale); !errors.Is(err, store.ErrChainConflict) {
		t.Fatalf("AppendAudit on a stale head after reopen: %v, want ErrChainConflict", err)
	}
	more := c.next(2)
	if err := al.AppendAudit(ctx, more); err != nil {
		t.Fatalf("AppendAudit after reopen: %v", err)
	}
	wantChain(t, s, al, 4, 14, byseq(all, more))
}
