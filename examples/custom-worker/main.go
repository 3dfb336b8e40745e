// Command custom-worker is a worker image of your own, built on the resend-webhook-operator
// worker SDK. Point a ResendWebhook's spec.worker.image at an image of this binary: the operator
// passes it the same flags as the built-in worker (queue, Redis, retry policy, …), and it
// gets the same retry policy, circuit breaker, dead-letter store, /healthz, /readyz and /metrics.
//
// Run it by hand against a local Redis:
//
//	go run ./examples/custom-worker --redis-url=redis://127.0.0.1:6379/0 --queue=default.my-webhook --admin-listen=127.0.0.1:9090
package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resend-webhook-operator/resend-webhook-operator/worker"
)

func main() {
	worker.Main(func(w *worker.Worker) error {
		// Your own metrics are served on the worker's /metrics.
		suppressed := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "myapp_suppressed_recipients_total", Help: "Recipients added to the suppression list.",
		})
		w.Registry().MustRegister(suppressed)

		// An exact event type with a typed payload. A payload that does not decode is
		// dead-lettered at once; any error returned is retried per the retry policy.
		w.HandleFunc(worker.EventEmailBounced, worker.Typed(func(ctx context.Context, ev *worker.Event, d worker.EmailData) error {
			if d.Bounce == nil || d.Bounce.Type != "Permanent" {
				return nil // transient bounces: nothing to do
			}
			for _, to := range d.To {
				// ev.ID (the svix-id) is the same on every delivery: use it to stay idempotent.
				if err := suppress(ctx, ev.ID, to); err != nil {
					if errors.Is(err, errSuppressionDown) {
						// The dependency is down, not this event: the circuit breaker counts it
						// and, after enough in a row, holds events without spending attempts.
						return worker.Unavailable(err)
					}
					return err // retried per the retry policy
				}
				suppressed.Inc()
			}
			return nil
		}))

		// A prefix: every other email.* event. The longest matching pattern wins, so
		// email.bounced still goes to the handler above.
		w.HandleFunc("email.*", func(_ context.Context, ev *worker.Event) error {
			w.Logger().Info("email event", "type", ev.Type, "id", ev.ID, "attempt", ev.Attempt)
			return nil
		})

		// A type you never want retried: say so with worker.Permanent (straight to the
		// dead-letter set, where `resend-webhook-operator dlq` can list and replay it).
		w.HandleFunc(worker.EventContactDeleted, worker.Typed(func(_ context.Context, _ *worker.Event, c worker.ContactData) error {
			if c.Email == "" {
				return worker.Permanent(errors.New("contact.deleted without an email"))
			}
			return nil
		}))

		// Every other type: with --sink-url set it is forwarded to the sink like the built-in
		// worker does; without it, it is dead-lettered ("no handler registered"). Register "*"
		// to handle everything else yourself.
		return nil
	})
}

// errSuppressionDown is what suppress returns when its backing service cannot be reached.
var errSuppressionDown = errors.New("suppression service unreachable")

// suppress stands in for your own code (a database write, an API call, …).
func suppress(_ context.Context, eventID, address string) error {
	fmt.Printf("suppress %s (event %s)\n", address, eventID)
	return nil
}
