// Package worker consumes the queue of Resend webhook events that the receiver fills (Asynq on
// Redis) and runs a handler for each event, with the ResendWebhook's retry policy, a circuit
// breaker that holds events while the sink is down, a dead-letter store (package
// internal/queuestore), Prometheus metrics and health endpoints.
//
// It is both the built-in "worker" subcommand, whose only handler is the sink forwarder
// (Sink: POST each event, signed the Standard Webhooks way, to --sink-url), and an SDK for
// custom worker images:
//
//	func main() {
//		worker.Main(func(w *worker.Worker) error {
//			w.HandleFunc(worker.EventEmailBounced, worker.Typed(func(ctx context.Context, ev *worker.Event, d worker.EmailData) error {
//				return suppress(ctx, ev.ID, d.To) // nil: done; error: retried; worker.Permanent(err): dead letter;
//				// worker.Unavailable(err): the dependency is down (counted by the circuit breaker)
//			}))
//			w.HandleFunc("email.*", logEmailEvent) // the longest matching pattern wins
//			return nil
//		})
//	}
//
// Main parses the same flags as the built-in worker, so the operator's rendered container
// args work unchanged for a custom image. See docs/worker.md and examples/custom-worker.
package worker
