// Package sender posts signed sample Resend events to a receiver, the way Resend (through Svix)
// does: svix-id, svix-timestamp and svix-signature headers over the raw JSON body. It backs the
// "send" subcommand (cmd/send) and the tests.
package sender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/resendapi"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/signing"
)

// Kind says why a request was sent.
type Kind string

// Kinds of requests.
const (
	KindDistinct  Kind = "distinct"  // a new event id, signed with the secret
	KindDuplicate Kind = "duplicate" // a re-delivery of an id already sent, freshly signed
	KindForged    Kind = "forged"    // a new event id signed with a random wrong secret
)

// Options says what to send.
type Options struct {
	URL  string // the receiver (or Ingress) URL
	Host string // Host header override, for Ingress host rules; empty = from URL

	Secret      string // whsec_… signing secret
	WrongSecret bool   // sign every distinct and duplicate event with a random secret instead

	Count int      // distinct events; 0 = one of each type in Types
	Types []string // event types to cycle through; empty = resendapi.EventTypes
	Body  []byte   // when set, every distinct event carries this JSON body (its "type" is used)

	Duplicates int // re-deliveries of already-sent ids, sent after all distinct events
	Forged     int // extra events signed with a random wrong secret, sent with the duplicates

	Rate        float64 // requests per second over all workers; 0 = as fast as possible
	Concurrency int     // requests in flight; 0 = 8
	Timeout     time.Duration
	Client      *http.Client // nil = a client with Timeout
}

// Result is the outcome of one request.
type Result struct {
	Kind    Kind
	ID      string
	Type    string
	Status  int // 0 when the request failed before an answer
	Err     error
	Latency time.Duration
}

// Summary is the outcome of a Send.
type Summary struct {
	Results []Result
	Elapsed time.Duration
}

// DistinctIDs returns the ids of the distinct events, in the order they were planned.
func (s *Summary) DistinctIDs() []string {
	var ids []string
	for _, r := range s.Results {
		if r.Kind == KindDistinct {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// Codes counts answers per status code for one kind (0 = transport error).
func (s *Summary) Codes(k Kind) map[int]int {
	m := map[int]int{}
	for _, r := range s.Results {
		if r.Kind == k {
			m[r.Status]++
		}
	}
	return m
}

// Errors returns the transport errors (not HTTP error statuses).
func (s *Summary) Errors() []error {
	var errs []error
	for _, r := range s.Results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errs
}

// Print writes a human summary: counts per kind and status code, rate and latency.
func (s *Summary) Print(w io.Writer) {
	total := len(s.Results)
	fmt.Fprintf(w, "sent %d requests in %s (%.0f req/s)\n", total, s.Elapsed.Round(time.Millisecond), float64(total)/max(s.Elapsed.Seconds(), 1e-9))
	for _, k := range []Kind{KindDistinct, KindDuplicate, KindForged} {
		codes := s.Codes(k)
		if len(codes) == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-9s", k)
		for _, c := range slices.Sorted(maps.Keys(codes)) {
			label := strconv.Itoa(c)
			if c == 0 {
				label = "error"
			}
			fmt.Fprintf(w, " %s×%d", label, codes[c])
		}
		fmt.Fprintln(w)
	}
	var lat []time.Duration
	for _, r := range s.Results {
		if r.Err == nil {
			lat = append(lat, r.Latency)
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		fmt.Fprintf(w, "  latency   p50 %s  p99 %s  max %s\n", pct(lat, 50), pct(lat, 99), lat[len(lat)-1])
	}
	if errs := s.Errors(); len(errs) > 0 {
		fmt.Fprintf(w, "  first error: %v\n", errs[0])
	}
}

func pct(sorted []time.Duration, p int) time.Duration {
	return sorted[min(len(sorted)-1, len(sorted)*p/100)].Round(10 * time.Microsecond)
}

// planned is one request to make.
type planned struct {
	kind   Kind
	id     string
	typ    string
	body   []byte
	secret string
}

// Send posts the events Options describes and returns every result. Distinct events go first;
// duplicates and forged events follow once all distinct events were answered, so a duplicate is
// always a re-delivery of an id the receiver has already seen.
func Send(ctx context.Context, o Options) (*Summary, error) {
	if o.URL == "" {
		return nil, errors.New("send: url is empty")
	}
	if o.Secret == "" && !o.WrongSecret {
		return nil, errors.New("send: secret is empty (use --secret, --secret-file or --wrong-secret)")
	}
	first, second, err := plan(o)
	if err != nil {
		return nil, err
	}
	client := o.Client
	if client == nil {
		client = &http.Client{Timeout: cmp(o.Timeout, 15*time.Second)}
	}
	var limiter *rate.Limiter
	if o.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(o.Rate), 1)
	}
	start := time.Now()
	s := &Summary{}
	for _, batch := range [][]planned{first, second} {
		res, err := sendBatch(ctx, client, o, limiter, batch)
		s.Results = append(s.Results, res...)
		if err != nil {
			s.Elapsed = time.Since(start)
			return s, err
		}
	}
	s.Elapsed = time.Since(start)
	return s, nil
}

func cmp(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func plan(o Options) (first, second []planned, err error) {
	types := o.Types
	if len(types) == 0 {
		types = resendapi.EventTypes
	}
	fileType := ""
	if o.Body != nil {
		var probe struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(o.Body, &probe); err != nil || probe.Type == "" {
			return nil, nil, fmt.Errorf("send: the event file must be a JSON object with a \"type\" (%v)", err)
		}
		fileType = probe.Type
	}
	count := o.Count
	if count <= 0 {
		count = len(types)
		if o.Body != nil {
			count = 1
		}
	}
	secret := o.Secret
	if o.WrongSecret {
		secret = signing.NewSecret()
	}
	now := time.Now()
	for i := range count {
		p := planned{kind: KindDistinct, id: signing.NewMessageID(), secret: secret}
		if o.Body != nil {
			p.typ, p.body = fileType, o.Body
		} else {
			p.typ = types[i%len(types)]
			p.body = SampleEvent(p.typ, i, now)
		}
		first = append(first, p)
	}
	for i := range o.Duplicates {
		if len(first) == 0 {
			break
		}
		d := first[i%len(first)]
		d.kind = KindDuplicate
		second = append(second, d)
	}
	wrong := signing.NewSecret()
	for i := range o.Forged {
		typ := types[i%len(types)]
		second = append(second, planned{kind: KindForged, id: signing.NewMessageID(), typ: typ, body: SampleEvent(typ, count+i, now), secret: wrong})
	}
	// Interleave forged events with the duplicates so both meet the receiver in the same state.
	mrand.Shuffle(len(second), func(i, j int) { second[i], second[j] = second[j], second[i] })
	return first, second, nil
}

func sendBatch(ctx context.Context, client *http.Client, o Options, limiter *rate.Limiter, batch []planned) ([]Result, error) {
	results := make([]Result, len(batch))
	conc := o.Concurrency
	if conc <= 0 {
		conc = 8
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	var mu sync.Mutex
	for i, p := range batch {
		if limiter != nil {
			if err := limiter.Wait(gctx); err != nil {
				break
			}
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			start := time.Now()
			status, err := Post(gctx, client, o.URL, o.Host, p.secret, p.id, p.body)
			mu.Lock()
			results[i] = Result{Kind: p.kind, ID: p.id, Type: p.typ, Status: status, Err: err, Latency: time.Since(start)}
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return results, err
	}
	return results, nil
}

// Post signs body as Svix does at the current time and POSTs it; it returns the status code.
func Post(ctx context.Context, client *http.Client, url, host, secret, id string, body []byte) (int, error) {
	h, err := signing.Headers([]string{secret}, id, time.Now(), body)
	if err == nil {
		h.Set("User-Agent", "Svix-Webhooks/1.0 (resend-webhook-operator send)")
	}
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header = h
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
