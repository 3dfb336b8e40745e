package queuestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

// TestEnqueueMatchesAsynq: a task written by the enqueue script is what asynq.Client.Enqueue
// writes for the same task and options: the same hash fields, the same message field by field
// (headers compared as a map: protobuf leaves a map's order open), in the pending list, in
// Asynq's queue set once registered, and the same answer to a duplicate id from either side. An
// Asynq server then runs it (TestEnqueuedTaskRuns).
func TestEnqueueMatchesAsynq(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		retry   int
		timeout time.Duration
		headers int
	}{
		{"retries", 3, 30 * time.Second, 5},
		{"one attempt", 0, 90 * time.Second, 5},
		{"one header", 24, time.Hour, 1},
		{"rounded down", 1, 1500 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := []Header{
				{task.HeaderSvixID, "msg_" + tc.name}, {task.HeaderSvixTimestamp, "1614265330"}, {task.HeaderSvixSignature, "v1,abc v1,def"},
				{task.HeaderReceivedAt, "2026-01-02T03:04:05Z"}, {task.HeaderWebhook, "ns/store"},
			}[:tc.headers]
			want := map[string]string{}
			for _, h := range headers {
				want[h.Name] = h.Value
			}
			payload := []byte(`{"type":"email.bounced","data":{}}`)
			asynqID, ourID := "asynq-"+tc.name, "ours-"+tc.name
			_, err := f.client.Enqueue(asynq.NewTaskWithHeaders(task.TypeName("email.bounced"), payload, maps.Clone(want)),
				asynq.Queue(q), asynq.TaskID(asynqID), asynq.MaxRetry(tc.retry), asynq.Timeout(tc.timeout), asynq.Retention(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			ours := &Task{ID: ourID, Type: task.TypeName("email.bounced"), Queue: q, Payload: payload, Headers: headers,
				Retry: tc.retry, Timeout: tc.timeout, Retention: time.Hour}
			if n := f.runEnqueue(t, ours); n != 1 {
				t.Fatalf("enqueue answered %d, want 1", n)
			}

			theirs, mine := f.rdb.HGetAll(ctx, TaskKey(q, asynqID)).Val(), f.rdb.HGetAll(ctx, TaskKey(q, ourID)).Val()
			if k1, k2 := slices.Sorted(maps.Keys(theirs)), slices.Sorted(maps.Keys(mine)); !slices.Equal(k1, k2) || mine["state"] != theirs["state"] {
				t.Errorf("task hash fields %v state %q, asynq's %v state %q", k2, mine["state"], k1, theirs["state"])
			}
			a, err := decodeFields([]byte(theirs["msg"]))
			if err != nil {
				t.Fatal(err)
			}
			b, err := decodeFields([]byte(mine["msg"]))
			if err != nil {
				t.Fatal(err)
			}
			delete(a, fieldID) // the ids differ; the Inspector reads ours below
			delete(b, fieldID)
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("message fields\n ours:  %v\n asynq: %v", b, a)
			}

			info, err := f.insp.GetTaskInfo(q, ourID)
			if err != nil {
				t.Fatal(err)
			}
			if info.ID != ourID || info.State != asynq.TaskStatePending || info.MaxRetry != tc.retry || info.Timeout != tc.timeout.Truncate(time.Second) ||
				info.Retention != time.Hour || !bytes.Equal(info.Payload, payload) || !maps.Equal(info.Headers, want) {
				t.Errorf("Inspector sees %+v", info)
			}
			pending := f.rdb.LRange(ctx, PendingKey(q), 0, -1).Val()
			if !slices.Contains(pending, ourID) || !slices.Contains(pending, asynqID) {
				t.Errorf("pending list %v", pending)
			}

			// Duplicates, whichever side wrote the first task.
			if n := f.runEnqueue(t, ours); n != 0 {
				t.Errorf("a second enqueue of %s answered %d, want 0", ourID, n)
			}
			if n := f.runEnqueue(t, &Task{ID: asynqID, Type: ours.Type, Queue: q, Payload: payload}); n != 0 {
				t.Errorf("enqueue of asynq's %s answered %d, want 0", asynqID, n)
			}
			_, err = f.client.Enqueue(asynq.NewTask(ours.Type, payload), asynq.Queue(q), asynq.TaskID(ourID))
			if !errors.Is(err, asynq.ErrTaskIDConflict) {
				t.Errorf("asynq enqueue of our %s: %v, want ErrTaskIDConflict", ourID, err)
			}
		})
	}
}

// TestEnqueuedTaskRuns: an Asynq server runs a task the enqueue script wrote, with its headers and
// retry budget.
func TestEnqueuedTaskRuns(t *testing.T) {
	f := newFixture(t)
	got := make(chan *asynq.Task, 1)
	f.serve(t, func(_ context.Context, tk *asynq.Task) error {
		got <- tk
		return nil
	})
	tk := &Task{ID: "msg_runs", Type: task.TypeName("email.sent"), Queue: q, Payload: []byte(`{"type":"email.sent"}`),
		Headers: []Header{{task.HeaderSvixID, "msg_runs"}}, Retry: 2, Timeout: 10 * time.Second, Retention: time.Minute}
	if n := f.runEnqueue(t, tk); n != 1 {
		t.Fatalf("enqueue answered %d", n)
	}
	select {
	case r := <-got:
		if r.Type() != tk.Type || string(r.Payload()) != string(tk.Payload) || r.Headers()[task.HeaderSvixID] != "msg_runs" {
			t.Errorf("ran %s %s %v", r.Type(), r.Payload(), r.Headers())
		}
	case <-time.After(30 * time.Second): // a bound for a broken test, not a wait
		t.Fatal("the task did not run within 30s")
	}
}

// runEnqueue enqueues tk as dlq replay does (runBatch loads the script when Redis lacks it).
func (f *fixture) runEnqueue(t *testing.T, tk *Task) int64 {
	t.Helper()
	ctx := context.Background()
	if err := f.rdb.SAdd(ctx, QueuesKey, tk.Queue).Err(); err != nil {
		t.Fatal(err)
	}
	cmds, err := runBatch(ctx, f.rdb, enqueueScript, []scriptCall{enqueueCall(tk, tk.Encode(), time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	n, err := cmds[0].Int64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// decodeFields is a protobuf message as field number → raw values; the entries of the header
// map are sorted.
func decodeFields(b []byte) (map[protowire.Number][]string, error) {
	out := map[protowire.Number][]string{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		out[num] = append(out[num], fmt.Sprintf("%d:%x", typ, b[n:n+m]))
		b = b[n+m:]
	}
	slices.Sort(out[fieldHeaders])
	return out, nil
}

// AppendEncoded into a used buffer (the receiver recycles them) gives Encode's bytes, whatever
// the buffer held before and however large it is.
func TestAppendEncodedIntoAUsedBuffer(t *testing.T) {
	tk := &Task{ID: "msg_1", Type: task.TypeName("email.sent"), Queue: q, Payload: []byte(`{"type":"email.sent"}`),
		Headers: []Header{{task.HeaderSvixID, "msg_1"}}, Retry: 2, Timeout: time.Minute, Retention: time.Hour}
	want := tk.Encode()
	for _, buf := range [][]byte{nil, make([]byte, 0, 4), bytes.Repeat([]byte{0xff}, 4096)[:0]} {
		if got := tk.AppendEncoded(buf); !bytes.Equal(got, want) {
			t.Errorf("AppendEncoded into a buffer of capacity %d = %x, want %x", cap(buf), got, want)
		}
	}
	if got := tk.AppendEncoded([]byte("prefix")); !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Errorf("AppendEncoded does not append: %q", got)
	}
}
