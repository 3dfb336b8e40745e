package receiver

import (
	"errors"
	"fmt"
)

// enqueueRequest travels in the context of one request's enqueue; the hook fills in how the
// replica acknowledgement went.
type enqueueRequest struct {
	marker string // key the marker INCR writes (replica acknowledgement)
	replicaWait
}

// replicaWait is what the WAIT after a request's script said.
type replicaWait struct {
	ran     bool  // a WAIT followed a successful enqueue script
	replica int64 // replicas WAIT reported
	err     error // the marker write or the WAIT failed
}

type enqueueRequestKey struct{}

// errNoWait is a handler wired to a client without the hook: failing beats a 200 that lies.
var errNoWait = errors.New("no WAIT ran: the handler's asynq.Client is not made from the redis client passed to NewEnqueuer")

// waitsForReplicas reports whether a 200 needs the replicas' acknowledgement.
func (e *Enqueuer) waitsForReplicas() bool { return e != nil && e.minReplicas > 0 }

// checkReplicas says why the enqueue of req is not acknowledged by enough replicas.
func (e *Enqueuer) checkReplicas(req *enqueueRequest) error {
	w := req.replicaWait
	switch {
	case !w.ran:
		return errNoWait
	case w.err != nil:
		return fmt.Errorf("replica acknowledgement: %w", w.err)
	case w.replica < int64(e.minReplicas):
		return fmt.Errorf("%d of %d replicas acknowledged within %s", w.replica, e.minReplicas, e.replicaTimeout)
	}
	return nil
}
