package worker_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/resend-webhook-operator/resend-webhook-operator/api/v1alpha1"
	"github.com/resend-webhook-operator/resend-webhook-operator/controllers/render"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
	"github.com/resend-webhook-operator/resend-webhook-operator/receiver"
	"github.com/resend-webhook-operator/resend-webhook-operator/worker"
)

// e2eSecret is the signing secret the end-to-end tests' receivers read and their senders sign with.
const e2eSecret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// components runs receivers and workers with the arguments the operator renders for a webhook;
// only addresses, the log level and the given extra flags differ. Their logs go to one buffer,
// whose tail a failed test prints; every component stops at cleanup at the latest.
type components struct {
	t    *testing.T
	dir  string // the mounted signing Secret
	logs testutil.LogBuffer
}

func newComponents(t *testing.T) *components {
	c := &components{t: t, dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(c.dir, "signing-secret"), []byte(e2eSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last logs:\n%s", c.logs.Tail(40))
		}
	})
	return c
}

// receiver starts a receiver for rw, waits until it is ready and returns its URL.
func (c *components) receiver(rw *v1alpha1.ResendWebhook, extra ...string) (url string, stop func()) {
	listen, admin := freeAddr(c.t), freeAddr(c.t)
	args := append(render.ReceiverArgs(rw)[1:], "--listen="+listen, "--admin-listen="+admin, "--secrets-dir="+c.dir, "--log-level=warn")
	stop = c.start(receiver.Command.Run, append(args, extra...))
	testutil.EventuallyTrue(c.t, 20*time.Second, "receiver ready", func() bool { return get("http://"+admin+"/readyz") == http.StatusOK })
	return "http://" + listen + "/", stop
}

// worker starts a worker for rw.
func (c *components) worker(rw *v1alpha1.ResendWebhook, extra ...string) (stop func()) {
	args := append(render.WorkerArgs(rw)[1:], "--admin-listen=127.0.0.1:0", "--log-level=warn")
	return c.start(worker.Command.Run, append(args, extra...))
}

// start runs cmd until stop is called (once; again at cleanup does nothing).
func (c *components) start(cmd func(context.Context, []string, func(string) string, io.Writer) error, args []string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd(ctx, args, func(string) string { return "" }, &c.logs) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				c.t.Errorf("%s stopped with %v", args[0], err)
			}
		case <-time.After(60 * time.Second):
			c.t.Error("a component did not stop within 60s")
		}
	}
	c.t.Cleanup(stop)
	return stop
}
