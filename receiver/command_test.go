package receiver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	rwhtest "github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFlagsDefaultsEnvAndValidation(t *testing.T) {
	c, err := parseFlags([]string{"--secrets-dir=/s", "--webhook=team/resend"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != ":8080" || c.adminListen != ":9090" || c.queue != "team.resend" || c.maxAttempts != 3 ||
		c.maxDuration != time.Minute || c.dedupWindow != 24*time.Hour || c.maxBodyBytes != 1<<20 || c.tolerance != 5*time.Minute {
		t.Fatalf("defaults: %+v", c)
	}

	c, err = parseFlags([]string{"--max-attempts=7"}, env(map[string]string{
		"RWH_SECRETS_DIR": "/etc/rwh/signing", "RWH_QUEUE": "q1", "RWH_EVENTS": "email.sent, email.bounced",
		"RWH_MAX_ATTEMPTS": "2", "RWH_TOLERANCE": "1m", "RWH_MAX_BODY_BYTES": "10", "RWH_REDIS_URL": "redis://r:6380/3",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.secretsDir != "/etc/rwh/signing" || c.queue != "q1" || !slices.Equal(c.events, []string{"email.sent", "email.bounced"}) ||
		c.maxAttempts != 7 || c.tolerance != time.Minute || c.maxBodyBytes != 10 || c.redis.URL != "redis://r:6380/3" {
		t.Fatalf("env fallback (flag wins over env): %+v", c)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--queue=q"}, "--secrets-dir is required"},
		{[]string{"--secrets-dir=/s"}, "--queue is required"},
		{[]string{"--secrets-dir=/s", "--webhook=noslash"}, "NAMESPACE/NAME"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--max-attempts=0"}, "1..25"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--max-attempts=26"}, "1..25"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--tolerance=0s"}, "--tolerance"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--secrets-rescan-interval=5s"}, "at most 2s"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--max-body-bytes=0"}, "--max-body-bytes"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--log-level=loud"}, "log-level"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--max-duration=soon"}, "max-duration"},
	} {
		if _, err := parseFlags(tc.args, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}

func TestHelpExitsCleanly(t *testing.T) {
	var out bytes.Buffer
	err := Command.Run(t.Context(), []string{"--help"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp (main exits 0 on it)", err)
	}
	for _, f := range []string{"-listen", "-admin-listen", "-queue", "-secrets-dir", "-events", "-max-attempts", "-max-duration",
		"-dedup-window", "-max-body-bytes", "-tolerance", "-webhook", "-redis-url", "-redis-password-file", "RWH_"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("usage lacks %s", f)
		}
	}
}

func TestRedisFlagsMapToSentinelAndTLS(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseFlags([]string{"--secrets-dir=/s", "--queue=q", "--redis-url=redis-sentinel://s1:26379,s2:26379/2?master=mymaster",
		"--redis-password-file=" + pw, "--redis-pool-size=32"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := c.redisConnOpt()
	if err != nil {
		t.Fatal(err)
	}
	fo, ok := opt.(asynq.RedisFailoverClientOpt)
	if !ok || fo.MasterName != "mymaster" || !slices.Equal(fo.SentinelAddrs, []string{"s1:26379", "s2:26379"}) ||
		fo.DB != 2 || fo.Password != "s3cret" || fo.PoolSize != 32 {
		t.Fatalf("sentinel url → %#v", opt)
	}
	c, err = parseFlags([]string{"--secrets-dir=/s", "--queue=q", "--redis-url=rediss://redis.example:6390/1",
		"--redis-sentinel-master=m", "--redis-sentinel-addrs=a:1,b:2"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if opt, err = c.redisConnOpt(); err != nil {
		t.Fatal(err)
	}
	if fo, ok := opt.(asynq.RedisFailoverClientOpt); !ok || fo.MasterName != "m" || len(fo.SentinelAddrs) != 2 || fo.TLSConfig == nil || fo.DB != 1 {
		t.Fatalf("sentinel flags → %#v", opt)
	}
	c, _ = parseFlags([]string{"--secrets-dir=/s", "--queue=q", "--redis-url=rediss://redis.example:6390/1"}, env(nil), io.Discard)
	if opt, err = c.redisConnOpt(); err != nil {
		t.Fatal(err)
	}
	if co, ok := opt.(asynq.RedisClientOpt); !ok || co.Addr != "redis.example:6390" || co.TLSConfig == nil || co.TLSConfig.ServerName != "redis.example" {
		t.Fatalf("rediss url → %#v", opt)
	}
}

// running is the receiver command started as the binary would run it.
type running struct {
	webhookURL, adminURL string
	cancel               context.CancelFunc
	done                 chan error
	logs                 *syncBuffer
}

func startCommand(t *testing.T, extraArgs ...string) *running {
	t.Helper()
	wp, err1 := rwhtest.FreePort()
	ap, err2 := rwhtest.FreePort()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	r := &running{
		webhookURL: "http://127.0.0.1:" + strconv.Itoa(wp) + "/",
		adminURL:   "http://127.0.0.1:" + strconv.Itoa(ap),
		done:       make(chan error, 1),
		logs:       &syncBuffer{},
	}
	args := append([]string{"--listen=127.0.0.1:" + strconv.Itoa(wp), "--admin-listen=127.0.0.1:" + strconv.Itoa(ap), "--shutdown-delay=0s"}, extraArgs...)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- run(ctx, args, env(nil), r.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("receiver did not stop")
		}
	})
	eventually(t, 10*time.Second, "admin /healthz answers", func() bool { return r.get("/healthz") == 200 })
	return r
}

func (r *running) get(path string) int {
	resp, err := http.Get(r.adminURL + path)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func secretsDirWith(t *testing.T, secret string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "signing-secret"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCommandRedisOutageReadinessAndMetrics(t *testing.T) {
	redis := rwhtest.StartRedis(t)
	r := startCommand(t, "--secrets-dir="+secretsDirWith(t, vectorSecret), "--webhook=ns/hook",
		"--redis-url="+redis.URL(), "--enqueue-timeout=2s", "--log-level=debug")
	eventually(t, 10*time.Second, "/readyz ok", func() bool { return r.get("/readyz") == 200 })
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: redis.Addr()})
	t.Cleanup(func() { _ = insp.Close() })

	post := func(id string) response {
		body := event("email.sent")
		return do(t, http.MethodPost, r.webhookURL, signed(t, vectorSecret, id, time.Now(), body), bytes.NewReader(body))
	}
	if resp := post("msg_cmd_1"); resp.code != 200 {
		t.Fatalf("first: %d %s", resp.code, resp.body)
	}
	if _, err := insp.GetTaskInfo("ns.hook", "msg_cmd_1"); err != nil { // default queue from --webhook
		t.Fatal(err)
	}
	// The webhook port serves no admin endpoints.
	if resp := do(t, http.MethodGet, r.webhookURL+"metrics", nil, nil); resp.code != 405 {
		t.Fatalf("GET /metrics on --listen: %d", resp.code)
	}

	redis.Stop()
	if resp := post("msg_cmd_2"); resp.code != 503 || resp.hdr.Get("Retry-After") == "" {
		t.Fatalf("redis down: %d %q", resp.code, resp.body)
	}
	eventually(t, 10*time.Second, "/readyz fails", func() bool { return r.get("/readyz") == 503 })

	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "/readyz ok again", func() bool { return r.get("/readyz") == 200 })
	if resp := post("msg_cmd_2"); resp.code != 200 {
		t.Fatalf("redis back: %d %s", resp.code, resp.body)
	}
	// The queue is listed again (the probe re-adds it), so asynq's Inspector sees the task.
	eventually(t, 5*time.Second, "task visible to the inspector", func() bool {
		_, err := insp.GetTaskInfo("ns.hook", "msg_cmd_2")
		return err == nil
	})

	metrics := scrape(t, r.adminURL+"/metrics")
	for _, want := range []string{
		`rwh_receiver_requests_total{code="200",reason="enqueued",webhook="ns/hook"} 2`,
		`rwh_receiver_requests_total{code="503",reason="enqueue_failed",webhook="ns/hook"} 1`,
		`rwh_receiver_requests_total{code="405",reason="method",webhook="ns/hook"} 1`,
		`rwh_receiver_secrets_loaded{webhook="ns/hook"} 1`,
		`rwh_receiver_secrets_invalid{webhook="ns/hook"} 0`,
		`rwh_receiver_redis_up{webhook="ns/hook"} 1`,
		`rwh_receiver_enqueue_duration_seconds_count{webhook="ns/hook"} 3`,
		`rwh_receiver_verify_duration_seconds_count{webhook="ns/hook"} 3`,
		`rwh_receiver_duplicates_total{webhook="ns/hook"} 0`,
		`rwh_receiver_filtered_total{webhook="ns/hook"} 0`,
		`go_goroutines`,
	} {
		if !slices.Contains(metrics, want) && !slices.ContainsFunc(metrics, func(l string) bool { return strings.HasPrefix(l, want) && want == "go_goroutines" }) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if logs := r.logs.String(); !strings.Contains(logs, `"msg":"redis unreachable"`) || !strings.Contains(logs, `"svix_id":"msg_cmd_1"`) {
		t.Errorf("logs:\n%s", logs)
	}
}

func scrape(t *testing.T, url string) []string {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var lines []string
	for s := bufio.NewScanner(resp.Body); s.Scan(); {
		lines = append(lines, s.Text())
	}
	return lines
}

func TestCommandReadinessNeedsASecret(t *testing.T) {
	redis := rwhtest.StartRedis(t)
	dir := secretsDirWith(t, "not-a-whsec")
	r := startCommand(t, "--secrets-dir="+dir, "--queue=q", "--redis-url="+redis.URL(), "--secrets-rescan-interval=50ms")
	// Redis is fine, the only secret is invalid: not ready.
	eventually(t, 5*time.Second, "redis probed", func() bool {
		return slices.Contains(scrape(t, r.adminURL+"/metrics"), `rwh_receiver_redis_up{webhook=""} 1`)
	})
	if code := r.get("/readyz"); code != 503 {
		t.Fatalf("/readyz with no valid secret: %d", code)
	}
	if err := os.WriteFile(filepath.Join(dir, "signing-secret"), []byte(vectorSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "/readyz ok after a valid secret appeared", func() bool { return r.get("/readyz") == 200 })
}

// TestCommandGracefulShutdown: after SIGTERM the receiver fails readiness and answers 503 during
// --shutdown-delay, answers a request that was in flight, and exits in bounded time.
func TestCommandGracefulShutdown(t *testing.T) {
	redis := rwhtest.StartRedis(t)
	r := startCommand(t, "--secrets-dir="+secretsDirWith(t, vectorSecret), "--queue=q", "--redis-url="+redis.URL(),
		"--shutdown-delay=1s", "--shutdown-grace=5s")
	eventually(t, 10*time.Second, "/readyz ok", func() bool { return r.get("/readyz") == 200 })

	// A request in flight: headers sent, body still coming.
	body := event("email.sent")
	hdr := signed(t, vectorSecret, "msg_inflight", time.Now(), body)
	conn, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(r.webhookURL, "http://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n", len(body))
	for k := range hdr {
		fmt.Fprintf(&req, "%s: %s\r\n", k, hdr.Get(k))
	}
	req.WriteString("\r\n")
	req.Write(body[:10])
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}

	stopped := time.Now()
	r.cancel() // SIGTERM
	eventually(t, 5*time.Second, "/readyz fails while draining", func() bool { return r.get("/readyz") == 503 })
	late := do(t, http.MethodPost, r.webhookURL, signed(t, vectorSecret, "msg_late", time.Now(), body), bytes.NewReader(body))
	if late.code != 503 || late.hdr.Get("Retry-After") == "" {
		t.Fatalf("request while draining: %d %s", late.code, late.body)
	}

	// The in-flight request completes and gets an answer, not a reset.
	if _, err := conn.Write(body[10:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request got no answer: %v", err)
	}
	_ = resp.Body.Close()
	// Its body completed after SIGTERM, so it reached the enqueue step while draining.
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("in-flight request: %d, want 503 with Retry-After", resp.StatusCode)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("receiver did not exit within delay + grace")
	}
	if d := time.Since(stopped); d < time.Second {
		t.Errorf("exited after %s, before --shutdown-delay", d)
	}
}

func TestCommandFailsOnBadSetup(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--secrets-dir=/does/not/exist", "--queue=q", "--redis-url=redis://127.0.0.1:1/0"}, "secrets dir"},
		{[]string{"--secrets-dir=" + t.TempDir(), "--queue=q", "--redis-url=http://x"}, "scheme"},
		{[]string{"--secrets-dir=" + t.TempDir(), "--queue=q", "--listen=256.0.0.1:1", "--admin-listen=127.0.0.1:0", "--redis-url=redis://127.0.0.1:1/0"}, "listen"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := run(ctx, tc.args, env(nil), io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error about %q", tc.args, err, tc.want)
		}
	}
}
