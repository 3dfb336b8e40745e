package signing

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// svixVerdict is the reference: svix's own check, given the headers as the request carried them.
func svixVerdict(t testing.TB, key []byte, id, ts string, body []byte, signatures string) bool {
	t.Helper()
	wh, err := svix.NewWebhookRaw(key)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Svix-Id": {id}, "Svix-Timestamp": {ts}, "Svix-Signature": {signatures}}
	return wh.VerifyIgnoringTimestamp(body, h) == nil
}

// svixSignature is svix's "v1,<base64>" for key; the timestamp is the header's spelling, parsed
// as svix parses it.
func svixSignature(t testing.TB, key []byte, id, ts string, body []byte) string {
	t.Helper()
	wh, err := svix.NewWebhookRaw(key)
	if err != nil {
		t.Fatal(err)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, time.Unix(unix, 0), body)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// expandSignatures replaces the placeholders of a signature header template: $S is the base64
// of the valid signature for key, $s the same without padding, $U its URL-safe spelling, $O the
// valid signature for otherKey and $X the valid one with its last base64 digit changed.
func expandSignatures(t testing.TB, template string, key, otherKey []byte, id, ts string, body []byte) string {
	t.Helper()
	_, valid, _ := strings.Cut(svixSignature(t, key, id, ts, body), ",")
	_, other, _ := strings.Cut(svixSignature(t, otherKey, id, ts, body), ",")
	raw, err := base64.StdEncoding.DecodeString(valid)
	if err != nil {
		t.Fatal(err)
	}
	// The last digit before "=" carries 4 bits of the sum and 2 zero bits: changing it to its
	// neighbour either changes the sum or sets a padding bit that lenient decoders ignore.
	x := []byte(valid)
	x[len(x)-2] ^= 1
	return strings.NewReplacer(
		"$S", valid,
		"$s", strings.TrimRight(valid, "="),
		"$U", base64.URLEncoding.EncodeToString(raw),
		"$O", other,
		"$X", string(x),
	).Replace(template)
}

// checkSame fails when the Verifier and svix disagree on one request. The caller's checks come
// first, as in the receiver: a non-empty id and signature header and a timestamp that parses.
func checkSame(t testing.TB, key []byte, id, ts string, body []byte, signatures string) (accepted, applicable bool) {
	t.Helper()
	unix, err := strconv.ParseInt(ts, 10, 64)
	if len(key) == 0 || id == "" || signatures == "" || err != nil {
		return false, false
	}
	want := svixVerdict(t, key, id, ts, body, signatures)
	if got := NewVerifier(key).Verify(id, unix, body, signatures); got != want {
		t.Fatalf("Verify(id %q, timestamp %q, body %q, signatures %q) = %v, svix says %v", id, ts, body, signatures, got, want)
	}
	return want, true
}

// Hand-picked cases around svix's parsing of the signature header and of the timestamp.
func TestVerifyMatchesSvixCases(t *testing.T) {
	key, otherKey := []byte("key-one-0123456789abcdef"), []byte("key-two-0123456789abcdef")
	body := []byte(`{"type":"email.sent","data":{"to":["a@example.com"]}}`)
	for _, c := range []struct {
		ts, signatures string
		want           bool
	}{
		{"1700000000", "v1,$S", true},
		{"1700000000", "v1,$O", false},
		{"1700000000", "v1,$O v1,$S", true}, // rotation: either secret
		{"1700000000", "v1,$S v1,$O", true},
		{"1700000000", "v2,$S", false},
		{"1700000000", "V1,$S", false},
		{"1700000000", "v1 ,$S", false},
		{"1700000000", "v2,$S v1,$S", true},
		{"1700000000", "v1,$s", false}, // without padding
		{"1700000000", "v1,$S=", false},
		{"1700000000", "v1,$X", false}, // decodes to the same sum with a lenient decoder
		{"1700000000", "v1,$S,trailing", true},
		{"1700000000", "v1,,$S", false},
		{"1700000000", "  v1,$S  ", true},
		{"1700000000", "garbage v1,$S", true},
		{"1700000000", "v1,$S\t", false},
		{"1700000000", "\tv1,$S", false},
		{"1700000000", "v1,", false},
		{"1700000000", ",", false},
		{"1700000000", " ", false},
		{"1700000000", "v1,$S\n", false},
		{"01700000000", "v1,$S", true}, // signed as 1700000000
		{"+1700000000", "v1,$S", true},
		{"-0", "v1,$S", true},
		{"-42", "v1,$S", true},
		{"9223372036854775807", "v1,$S", true},
		{"-9223372036854775808", "v1,$S", true},
	} {
		sigs := expandSignatures(t, c.signatures, key, otherKey, "msg_2Lx", c.ts, body)
		got, ok := checkSame(t, key, "msg_2Lx", c.ts, body, sigs)
		if !ok || got != c.want {
			t.Errorf("timestamp %q, signatures %q: accepted %v, want %v", c.ts, c.signatures, got, c.want)
		}
	}
	// The signed timestamp is the number, not the header's spelling.
	unix := int64(1700000000)
	if !NewVerifier(key).Verify("msg_2Lx", unix, body, svixSignature(t, key, "msg_2Lx", "+01700000000", body)) {
		t.Error("a signature over a leading-zero timestamp does not verify against the number")
	}
}

// Random requests, many of them valid: the Verifier accepts exactly what svix accepts.
func TestVerifyMatchesSvixRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	parts := []string{"v1,$S", "v1,$O", "v2,$S", "v1,$s", "v1,$U", "v1,$X", "v1,$S,x", "v1,", "v1", "", "garbage",
		"v1,AAAA", "v1," + base64.StdEncoding.EncodeToString(randBytes(32)), "v1a,$S", ",$S"}
	var accepted, rejected int
	for range 5000 {
		key, otherKey := randBytes(1+rng.IntN(80)), randBytes(1+rng.IntN(80))
		id := pick("msg_"+strconv.FormatUint(rng.Uint64(), 36), string(randBytes(1+rng.IntN(300))), "x", "a.b.c")
		ts := pick(strconv.FormatInt(rng.Int64N(1<<34), 10), strconv.FormatInt(-rng.Int64(), 10),
			"0"+strconv.FormatInt(rng.Int64N(1<<34), 10), "+"+strconv.FormatInt(rng.Int64N(1<<34), 10), "0")
		body := randBytes(rng.IntN(3000))
		n := 1 + rng.IntN(4)
		template := make([]string, n)
		for i := range template {
			template[i] = parts[rng.IntN(len(parts))]
		}
		sigs := expandSignatures(t, strings.Join(template, pick(" ", "  ", ",", "\t")), key, otherKey, id, ts, body)
		if ok, applicable := checkSame(t, key, id, ts, body, sigs); applicable && ok {
			accepted++
		} else if applicable {
			rejected++
		}
	}
	if accepted < 1000 || rejected < 1000 {
		t.Errorf("%d accepted, %d rejected: the cases do not cover both verdicts", accepted, rejected)
	}
}

// FuzzVerify: for any secret, id, timestamp, body and signature header (a template of
// expandSignatures, so that valid signatures are reached), the Verifier and svix agree.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, key, otherKey []byte, id, ts string, body []byte, template string) {
		if len(key) == 0 || len(otherKey) == 0 || id == "" {
			return
		}
		if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
			return
		}
		checkSame(t, key, id, ts, body, expandSignatures(t, template, key, otherKey, id, ts, body))
	})
}

// Many goroutines share one Verifier (and its pool of HMACs) and still get their own verdicts.
func TestVerifyConcurrent(t *testing.T) {
	key := []byte("concurrent-key")
	v := NewVerifier(key)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := fmt.Sprintf("msg_%d_%d", g, i)
				body := bytes.Repeat([]byte{byte(i)}, i*7)
				sig := svixSignature(t, key, id, "1700000000", body)
				if !v.Verify(id, 1700000000, body, sig) || v.Verify(id, 1700000001, body, sig) {
					errs <- id
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for id := range errs {
		t.Errorf("wrong verdict for %s", id)
	}
}

// The point of the Verifier: a check allocates nothing once its pool is warm.
func TestVerifyAllocatesNothing(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("instrumented build")
	}
	key, body := []byte("alloc-key"), bytes.Repeat([]byte("x"), 1024)
	sig := "v2,abc " + svixSignature(t, key, "msg_a", "1700000000", body)
	v := NewVerifier(key)
	if allocs := testing.AllocsPerRun(100, func() {
		if !v.Verify("msg_a", 1700000000, body, sig) {
			t.Fatal("rejected")
		}
	}); allocs != 0 {
		t.Errorf("%v allocations per check, want 0", allocs)
	}
}

// BenchmarkVerify: svix's VerifyIgnoringTimestamp against the Verifier, for one valid
// signature over a 1 KB body (the receiver's benchmark body) and a 64 KB one.
func BenchmarkVerify(b *testing.B) {
	key := []byte("bench-key-0123456789abcdef")
	for _, size := range []int{1 << 10, 64 << 10} {
		body := bytes.Repeat([]byte("a"), size)
		id, ts := "msg_2LxBenchmark0123456789", "1700000000"
		sig := svixSignature(b, key, id, ts, body)
		h := http.Header{"Svix-Id": {id}, "Svix-Timestamp": {ts}, "Svix-Signature": {sig}}
		wh, _ := svix.NewWebhookRaw(key)
		v := NewVerifier(key)
		b.Run(fmt.Sprintf("svix/body=%dKB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if wh.VerifyIgnoringTimestamp(body, h) != nil {
					b.Fatal("rejected")
				}
			}
		})
		b.Run(fmt.Sprintf("verifier/body=%dKB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if !v.Verify(id, 1700000000, body, sig) {
					b.Fatal("rejected")
				}
			}
		})
	}
}
