package queuestore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// SinkReport is what one worker says about its sink, written on every change of its circuit
// breaker and as a heartbeat every SinkHeartbeat.
type SinkReport struct {
	// Worker identifies the worker (pod name and a random suffix).
	Worker string `json:"-"`
	// State of its breaker: SinkClosed, SinkOpen or SinkDisabled.
	State string `json:"state"`
	// Since is when the breaker entered State.
	Since time.Time `json:"since"`
	// ErrorClass is the kind of the last sink-down failure while open: "connection refused",
	// "timeout", "http 503", … (never a URL).
	ErrorClass string `json:"errorClass,omitempty"`
	// UpdatedAt is when the worker wrote this report.
	UpdatedAt time.Time `json:"updatedAt"`
}

// Breaker states in a SinkReport.
const (
	SinkClosed   = "closed"   // deliveries flow
	SinkOpen     = "open"     // the sink looks down: deliveries are held
	SinkDisabled = "disabled" // the worker runs without a breaker
)

// Open reports whether the worker's breaker holds deliveries because the sink looks down.
func (r SinkReport) Open() bool { return r.State == SinkOpen }

// Heartbeat and freshness of sink reports.
const (
	// SinkHeartbeat is how often a worker rewrites its report.
	SinkHeartbeat = 10 * time.Second
	// SinkReportTTL is the age after which readers ignore a report (its worker is gone).
	SinkReportTTL = 30 * time.Second
	// sinkReportPrune is the age after which a writer deletes other workers' reports.
	sinkReportPrune = 10 * SinkReportTTL
)

// ReportSink writes the report of worker and deletes reports nobody refreshed for a long time
// (workers that died without removing theirs), so the hash stays as small as the fleet.
func (s *Store) ReportSink(ctx context.Context, worker string, r SinkReport) error {
	r.UpdatedAt = time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, s.k.sink, worker, b)
	all := pipe.HGetAll(ctx, s.k.sink)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("report sink state: %w", err)
	}
	var stale []string
	for w, v := range all.Val() {
		var other SinkReport
		if json.Unmarshal([]byte(v), &other) != nil || time.Since(other.UpdatedAt) > sinkReportPrune {
			stale = append(stale, w)
		}
	}
	if len(stale) > 0 {
		return s.rdb.HDel(ctx, s.k.sink, stale...).Err()
	}
	return nil
}

// RemoveSinkReport deletes worker's report (at shutdown).
func (s *Store) RemoveSinkReport(ctx context.Context, worker string) error {
	return s.rdb.HDel(ctx, s.k.sink, worker).Err()
}

// SinkReports returns the fresh reports (updated within SinkReportTTL) of the queue's workers,
// sorted by worker. The operator turns them into the SinkAvailable condition: False with
// reason SinkUnavailable while any fresh report is Open, Unknown while there is none.
func (s *Store) SinkReports(ctx context.Context) ([]SinkReport, error) {
	all, err := s.rdb.HGetAll(ctx, s.k.sink).Result()
	if err != nil {
		return nil, fmt.Errorf("read sink reports: %w", err)
	}
	now := time.Now()
	var out []SinkReport
	for w, v := range all {
		var r SinkReport
		if json.Unmarshal([]byte(v), &r) != nil || now.Sub(r.UpdatedAt) > SinkReportTTL {
			continue
		}
		r.Worker = w
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b SinkReport) int { return strings.Compare(a.Worker, b.Worker) })
	return out, nil
}
