package receiver

import (
	"errors"
	"fmt"
)

// replicaWait is what the WAIT after a request's script said.
type replicaWait struct {
	ran     bool  // a WAIT followed a successful enqueue script
	replica int64 // replicas WAIT reported
	err     error // the marker write or the WAIT failed
}

// errNoWait is an enqueue that returned without a WAIT: failing beats a 200 that lies.
var errNoWait = errors.New("no WAIT ran after the enqueue")

// waitsForReplicas reports whether a 200 needs the replicas' acknowledgement.
func (e *Enqueuer) waitsForReplicas() bool { return e != nil && e.minReplicas > 0 }

// checkReplicas says why an enqueue whose WAIT found w is not acknowledged by enough replicas.
func (e *Enqueuer) checkReplicas(w replicaWait) error {
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
