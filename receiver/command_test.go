package receiver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
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
		c.maxDuration != time.Minute || c.dedupWindow != 24*time.Hour || c.maxBodyBytes != 1<<20 || c.tolerance != 5*time.Minute ||
		c.maxInFlight != 512 || c.minReplicas != 0 || c.replicaTimeout != time.Second || c.shutdownGrace != 15*time.Second ||
		!c.enqueueBatching {
		t.Fatalf("defaults: %+v", c)
	}
	// 0 means 0: no grace and no delay at shutdown.
	if c, err := parseFlags([]string{"--secrets-dir=/s", "--queue=q", "--shutdown-grace=0s", "--shutdown-delay=0"}, env(nil), io.Discard); err != nil || c.shutdownGrace != 0 || c.shutdownDelay != 0 {
		t.Fatalf("--shutdown-grace=0s --shutdown-delay=0: %+v, %v", c, err)
	}

	c, err = parseFlags([]string{"--max-attempts=7"}, env(map[string]string{
		"RWH_SECRETS_DIR": "/etc/rwh/signing", "RWH_QUEUE": "q1", "RWH_EVENTS": "email.sent, email.bounced",
		"RWH_MAX_ATTEMPTS": "2", "RWH_TOLERANCE": "1m", "RWH_MAX_BODY_BYTES": "10", "RWH_REDIS_URL": "redis://r:6380/3",
		"RWH_ENQUEUE_BATCHING": "false",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.secretsDir != "/etc/rwh/signing" || c.queue != "q1" || !slices.Equal(c.events, []string{"email.sent", "email.bounced"}) ||
		c.maxAttempts != 7 || c.tolerance != time.Minute || c.maxBodyBytes != 10 || c.redis.URL != "redis://r:6380/3" || c.enqueueBatching {
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
		{[]string{"--secrets-dir=/s", "--queue=q", "--max-in-flight=0"}, "--max-in-flight=0 must be positive"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--min-replicas=-1"}, "--min-replicas=-1"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--replica-timeout=5ms"}, "--replica-timeout=5ms must be at least 10ms"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--replica-timeout=11s"}, "--replica-timeout=11s must be at most 10s"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--dedup-window=9m", "--tolerance=5m"}, "--dedup-window=9m0s must be at least twice --tolerance=5m0s (10m0s): a replay"},
		{[]string{"--secrets-dir=/s", "--queue=q", "--dedup-window=10m"}, ""}, // twice the default tolerance: fine
	} {
		if tc.want == "" {
			if _, err := parseFlags(tc.args, env(nil), io.Discard); err != nil {
				t.Errorf("%v: %v", tc.args, err)
			}
			continue
		}
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
		"-dedup-window", "-max-body-bytes", "-tolerance", "-webhook", "-redis-url", "-redis-password-file", "-max-in-flight",
		"-min-replicas", "-replica-timeout", "-enqueue-batching", "RWH_"} {
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
	return startCommandWith(t, hooks{}, extraArgs...)
}

func startCommandWith(t *testing.T, hk hooks, extraArgs ...string) *running {
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
	go func() { r.done <- runWithHooks(ctx, args, env(nil), r.logs, hk) }()
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
	// Once the probe saw the outage (readiness fails), requests get 503 without an enqueue try.
	eventually(t, 10*time.Second, "/readyz fails", func() bool { return r.get("/readyz") == 503 })
	if resp := post("msg_cmd_2"); resp.code != 503 || resp.hdr.Get("Retry-After") == "" || !strings.Contains(resp.body, "queue unreachable") {
		t.Fatalf("redis down: %d %q, want 503 redis_down", resp.code, resp.body)
	}

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
		`rwh_receiver_requests_total{code="503",reason="redis_down",webhook="ns/hook"} 1`,
		`rwh_receiver_requests_total{code="405",reason="method",webhook="ns/hook"} 1`,
		`rwh_receiver_secrets_loaded{webhook="ns/hook"} 1`,
		`rwh_receiver_secrets_invalid{webhook="ns/hook"} 0`,
		`rwh_receiver_redis_up{webhook="ns/hook"} 1`,
		`rwh_receiver_enqueue_duration_seconds_count{webhook="ns/hook"} 2`,
		`rwh_receiver_in_flight_requests{webhook="ns/hook"} 0`,
		`rwh_receiver_log_lines_suppressed_total{webhook="ns/hook"} 0`,
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

// TestCommandGracefulShutdown: after SIGTERM the receiver fails readiness and answers 503 for as
// long as --shutdown-delay lasts (here until the test ends it), then closes the listener, lets
// the request in flight finish within --shutdown-grace and exits.
func TestCommandGracefulShutdown(t *testing.T) {
	redis := rwhtest.StartRedis(t)
	endDelay := make(chan struct{})
	r := startCommandWith(t, hooks{endShutdownDelay: endDelay}, "--secrets-dir="+secretsDirWith(t, vectorSecret), "--queue=q",
		"--redis-url="+redis.URL(), "--shutdown-delay=1h", "--shutdown-grace=1h")
	eventually(t, 10*time.Second, "/readyz ok", func() bool { return r.get("/readyz") == 200 })

	body := event("email.sent")
	inFlight := startPartial(t, r.webhookURL, signed(t, vectorSecret, "msg_inflight", time.Now(), body), body, 10)

	r.cancel() // SIGTERM
	eventually(t, 5*time.Second, "/readyz fails while draining", func() bool { return r.get("/readyz") == 503 })
	late := do(t, http.MethodPost, r.webhookURL, signed(t, vectorSecret, "msg_late", time.Now(), body), bytes.NewReader(body))
	if late.code != 503 || late.hdr.Get("Retry-After") == "" || !strings.Contains(late.body, "shutting down") {
		t.Fatalf("request while draining: %d %s", late.code, late.body)
	}
	select {
	case err := <-r.done:
		t.Fatalf("exited (%v) before --shutdown-delay ended", err)
	default:
	}

	close(endDelay) // the delay is over: the listener closes, the request in flight may finish
	eventually(t, 5*time.Second, "webhook listener closed", func() bool {
		c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(r.webhookURL, "http://"), "/"))
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	select {
	case err := <-r.done:
		t.Fatalf("exited (%v) with a request in flight and grace left", err)
	default:
	}
	// Its body completed after SIGTERM, so it reached the enqueue step while draining: an
	// answer, not a reset.
	if resp := inFlight.finish(t); resp.code != 503 || resp.hdr.Get("Retry-After") == "" {
		t.Fatalf("in-flight request: %d %s, want 503 with Retry-After", resp.code, resp.body)
	}
	waitExit(t, r, 10*time.Second)
}

// TestCommandShutdownGraceZero: --shutdown-grace=0 gives a request in flight no time at all:
// the process exits without waiting for its body.
func TestCommandShutdownGraceZero(t *testing.T) {
	redis := rwhtest.StartRedis(t)
	r := startCommand(t, "--secrets-dir="+secretsDirWith(t, vectorSecret), "--queue=q", "--redis-url="+redis.URL(),
		"--shutdown-delay=0s", "--shutdown-grace=0s")
	eventually(t, 10*time.Second, "/readyz ok", func() bool { return r.get("/readyz") == 200 })
	body := event("email.sent")
	inFlight := startPartial(t, r.webhookURL, signed(t, vectorSecret, "msg_cut", time.Now(), body), body, 10)
	eventually(t, 5*time.Second, "request in flight", func() bool {
		return slices.Contains(scrape(t, r.adminURL+"/metrics"), `rwh_receiver_in_flight_requests{webhook=""} 1`)
	})
	r.cancel()
	waitExit(t, r, 10*time.Second) // the default grace is 15s: only a grace of 0 exits within this
	// The connection was closed under the request: no answer comes.
	if got, err := io.ReadAll(inFlight.conn); len(got) != 0 || (err != nil && !strings.Contains(err.Error(), "reset")) {
		t.Fatalf("the cut connection: read %q, %v; want EOF or a reset", got, err)
	}
	if !strings.Contains(r.logs.String(), `"msg":"shutdown grace period ended with requests still open"`) {
		t.Errorf("the cut is not logged:\n%s", r.logs.Tail(5))
	}
}

// waitExit waits until the command returned nil.
func waitExit(t *testing.T, r *running, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(timeout):
		t.Fatalf("the receiver did not exit within %s", timeout)
	}
}

// TestCommandReplicaFlags: --min-replicas and --replica-timeout reach the enqueue path.
func TestCommandReplicaFlags(t *testing.T) {
	primary := rwhtest.StartRedis(t)
	replica := rwhtest.StartRedisReplica(t, primary)
	r := startCommand(t, "--secrets-dir="+secretsDirWith(t, vectorSecret), "--webhook=ns/hook", "--redis-url="+primary.URL(),
		"--min-replicas=1", "--replica-timeout=100ms")
	eventually(t, 10*time.Second, "/readyz ok", func() bool { return r.get("/readyz") == 200 })
	body := event("email.sent")
	post := func(id string) response {
		return do(t, http.MethodPost, r.webhookURL, signed(t, vectorSecret, id, time.Now(), body), bytes.NewReader(body))
	}
	if resp := post("msg_cmd_rep_1"); resp.code != 200 {
		t.Fatalf("replica up: %d %s", resp.code, resp.body)
	}
	replica.Stop()
	if resp := post("msg_cmd_rep_2"); resp.code != 503 || !strings.Contains(resp.body, "replicas") {
		t.Fatalf("replica down: %d %s", resp.code, resp.body)
	}
	if !slices.Contains(scrape(t, r.adminURL+"/metrics"), `rwh_receiver_requests_total{code="503",reason="replica_shortfall",webhook="ns/hook"} 1`) {
		t.Error("the shortfall is not counted")
	}
	if logs := r.logs.String(); !strings.Contains(logs, `"min_replicas":1,"replica_timeout":"100ms"`) {
		t.Errorf("the start line lacks the replica settings:\n%s", r.logs.Tail(20))
	}
}

// TestCommandEnqueueBatchingFlag: batching is on by default and --enqueue-batching=false
// turns it off: enqueues then take the plain path, one round trip each, and no pipeline is
// counted.
func TestCommandEnqueueBatchingFlag(t *testing.T) {
	redis := rwhtest.StartRedis(t)
	for _, tc := range []struct {
		flag      string
		pipelines bool
	}{{"", true}, {"--enqueue-batching=false", false}} {
		t.Run(cmpOr(tc.flag, "default"), func(t *testing.T) {
			args := []string{"--secrets-dir=" + secretsDirWith(t, vectorSecret), "--webhook=ns/hook", "--redis-url=" + redis.URL()}
			if tc.flag != "" {
				args = append(args, tc.flag)
			}
			r := startCommand(t, args...)
			eventually(t, 10*time.Second, "/readyz ok", func() bool { return r.get("/readyz") == 200 })
			body := event("email.sent")
			id := "msg_batching_" + strconv.FormatBool(tc.pipelines)
			if resp := do(t, http.MethodPost, r.webhookURL, signed(t, vectorSecret, id, time.Now(), body), bytes.NewReader(body)); resp.code != 200 {
				t.Fatalf("%d %s", resp.code, resp.body)
			}
			const sent = `rwh_receiver_enqueue_pipelines_total{flush="immediate",webhook="ns/hook"} `
			metrics := scrape(t, r.adminURL+"/metrics")
			i := slices.IndexFunc(metrics, func(l string) bool { return strings.HasPrefix(l, sent) })
			if i < 0 {
				t.Fatalf("no %s in the metrics", sent)
			}
			if counted := metrics[i] != sent+"0"; counted != tc.pipelines {
				t.Errorf("pipelines counted: %v, want %v", counted, tc.pipelines)
			}
			if want := `"enqueue_batching":` + strconv.FormatBool(tc.pipelines); !strings.Contains(r.logs.String(), want) {
				t.Errorf("the start line lacks %s:\n%s", want, r.logs.Tail(20))
			}
		})
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
