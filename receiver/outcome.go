package receiver

import (
	"net/http"
	"strconv"
)

// outcome is how one request ended: an HTTP status, a metric/log reason and a short JSON body.
type outcome int

const (
	outEnqueued outcome = iota
	outDuplicate
	outFiltered
	outMethod
	outTooLarge
	outReadError
	outMissingHeaders
	outMalformedID
	outMalformedTimestamp
	outTimestamp
	outSignature
	outBodyNotJSON
	outNoType
	outBadType
	outNoSecrets
	outDraining
	outEnqueueFailed
	outOverloaded
	outRedisDown
	outReplicaShortfall
	numOutcomes
)

type outcomeInfo struct {
	code   int
	reason string
	body   []byte
}

// outcomes is the status table (docs/receiver.md, "Answers"). Bodies never echo the request.
var outcomes = [numOutcomes]outcomeInfo{
	outEnqueued:           info(http.StatusOK, "enqueued", "result", "enqueued"),
	outDuplicate:          info(http.StatusOK, "duplicate", "result", "duplicate: this svix-id is already enqueued"),
	outFiltered:           info(http.StatusOK, "filtered", "result", "filtered: event type not in --events, not enqueued"),
	outMethod:             info(http.StatusMethodNotAllowed, "method", "error", "only POST is allowed"),
	outTooLarge:           info(http.StatusRequestEntityTooLarge, "too_large", "error", "body exceeds --max-body-bytes"),
	outReadError:          info(http.StatusBadRequest, "read_error", "error", "could not read the request body"),
	outMissingHeaders:     info(http.StatusBadRequest, "missing_headers", "error", "svix-id, svix-timestamp and svix-signature are required"),
	outMalformedID:        info(http.StatusBadRequest, "malformed_id", "error", "svix-id is not 1-256 printable characters"),
	outMalformedTimestamp: info(http.StatusBadRequest, "malformed_timestamp", "error", "svix-timestamp is not a Unix time in seconds"),
	outTimestamp:          info(http.StatusUnauthorized, "timestamp", "error", "svix-timestamp is outside the allowed tolerance"),
	outSignature:          info(http.StatusUnauthorized, "signature", "error", "signature matches no signing secret"),
	outBodyNotJSON:        info(http.StatusBadRequest, "body_not_json", "error", "body is not JSON"),
	outNoType:             info(http.StatusBadRequest, "no_type", "error", "body has no string \"type\""),
	outBadType:            info(http.StatusBadRequest, "bad_type", "error", "\"type\" is not 1-256 printable characters"),
	outNoSecrets:          info(http.StatusUnauthorized, "no_secrets", "error", "no valid signing secret is loaded"),
	outDraining:           info(http.StatusServiceUnavailable, "draining", "error", "shutting down, retry later"),
	outEnqueueFailed:      info(http.StatusServiceUnavailable, "enqueue_failed", "error", "could not enqueue, retry later"),
	outOverloaded:         info(http.StatusServiceUnavailable, "overloaded", "error", "too many requests in progress, retry later"),
	outRedisDown:          info(http.StatusServiceUnavailable, "redis_down", "error", "queue unreachable, retry later"),
	outReplicaShortfall:   info(http.StatusServiceUnavailable, "replica_shortfall", "error", "not confirmed by enough queue replicas in time, retry later"),
}

func info(code int, reason, key, msg string) outcomeInfo {
	return outcomeInfo{code: code, reason: reason, body: []byte(`{"` + key + `":` + strconv.Quote(msg) + "}\n")}
}

func (o outcome) code() int         { return outcomes[o].code }
func (o outcome) reason() string    { return outcomes[o].reason }
func (o outcome) codeLabel() string { return strconv.Itoa(outcomes[o].code) }
