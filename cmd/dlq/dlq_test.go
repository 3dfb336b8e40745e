package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/queuestore"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/shard"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func TestListReplayDelete(t *testing.T) {
	r, client, insp := startRedis(t)
	const q = "ns.hooks"
	for _, id := range []string{"msg_a", "msg_b", "msg_c"} {
		tk := asynq.NewTaskWithHeaders(task.TypeName("email.bounced"), []byte(`{"type":"email.bounced"}`),
			map[string]string{task.HeaderSvixID: id, task.HeaderWebhook: "ns/hooks"})
		if _, err := client.Enqueue(tk, asynq.Queue(q), asynq.TaskID(id), asynq.MaxRetry(2)); err != nil {
			t.Fatal(err)
		}
		if err := insp.ArchiveTask(q, id); err != nil {
			t.Fatal(err)
		}
	}
	cmd := func(args ...string) (string, error) {
		var out bytes.Buffer
		base := []string{"--redis-url", r.URL(), "--queue", q}
		err := run(context.Background(), append(args[:1:1], append(base, args[1:]...)...), func(string) string { return "" }, &out)
		return out.String(), err
	}

	out, err := cmd("list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("list output is not JSON: %v\n%s", err, out)
	}
	if len(entries) != 3 || entries[0].EventType != "email.bounced" || entries[0].Webhook != "ns/hooks" {
		t.Fatalf("entries = %+v", entries)
	}

	if out, err = cmd("replay", "--id", "msg_a", "--max-attempts", "5"); err != nil || !strings.Contains(out, "replayed: 1") {
		t.Fatalf("replay: %v %q", err, out)
	}
	if info, err := insp.GetTaskInfo(q, "msg_a"); err != nil || info.State != asynq.TaskStatePending || info.Retried != 0 || info.MaxRetry != 4 {
		t.Fatalf("msg_a after replay: %+v %v; want pending with a fresh budget of 5 attempts", info, err)
	}
	if _, err = cmd("replay", "--id", "msg_a"); err == nil || !strings.Contains(err.Error(), "not a dead letter") {
		t.Fatalf("replaying a pending task should fail clearly, got %v", err)
	}
	if _, err = cmd("delete"); err == nil {
		t.Fatal("delete without --id or --all should fail")
	}
	if out, err = cmd("delete", "--all"); err != nil || !strings.Contains(out, "deleted: 2") {
		t.Fatalf("delete --all: %v %q", err, out)
	}
	if qi, err := insp.GetQueueInfo(q); err != nil || qi.Archived != 0 || qi.Pending != 1 {
		t.Fatalf("queue after delete: %+v %v", qi, err)
	}
}

func TestListUnknownQueueIsEmpty(t *testing.T) {
	r := testutil.StartRedis(t)
	var out bytes.Buffer
	err := run(context.Background(), []string{"list", "--redis-url", r.URL(), "--queue", "nope"}, func(string) string { return "" }, &out)
	if err != nil || !strings.HasPrefix(out.String(), "ID") || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("err=%v out=%q", err, out.String())
	}
}

// list --limit 0 pages through every dead letter (more than one Redis batch), and stored
// errors never show a URL's path or query.
func TestListAllPages(t *testing.T) {
	r := testutil.StartRedis(t)
	rdb := r.Client(t)
	store := queuestore.New(rdb, "ns.many")
	client := asynq.NewClientFromRedisClient(rdb)
	const n = queuestore.BatchSize + 20
	if err := testutil.ForEachParallel(n, 8, func(i int) error {
		id := fmt.Sprintf("msg_%04d", i)
		if _, err := client.Enqueue(asynq.NewTask(task.TypeName("email.sent"), []byte("{}")), asynq.Queue("ns.many"), asynq.TaskID(id)); err != nil {
			return err
		}
		return rdb.HSet(context.Background(), "asynq:{ns.many}:t:"+id, "state", "active").Err()
	}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("msg_%04d", i)
		if ok, err := store.WriteDeadLetter(context.Background(), queuestore.Record{ID: id, TaskType: "resend:email.sent",
			Attempts: 3, MaxAttempts: 3, LastError: `Post "https://sink.example/path/s3cret?token=t0ken": connection refused`}); err != nil || !ok {
			t.Fatalf("write %s: %v %v", id, ok, err)
		}
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"list", "--redis-url", r.URL(), "--queue", "ns.many", "--limit", "0", "-o", "json"}, func(string) string { return "" }, &out)
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	if err := json.Unmarshal(out.Bytes(), &entries); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if len(entries) != n {
		t.Fatalf("listed %d, want %d", len(entries), n)
	}
	if strings.Contains(out.String(), "s3cret") || strings.Contains(out.String(), "t0ken") || !strings.Contains(out.String(), "https://sink.example/…") {
		t.Errorf("list output shows a URL path or query: %s", entries[0].LastError)
	}
	out.Reset()
	if err := run(context.Background(), []string{"list", "--redis-url", r.URL(), "--queue", "ns.many", "--limit", "5", "--offset", "10"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 6 {
		t.Errorf("table with --limit 5 has %d lines, want header + 5:\n%s", lines, out.String())
	}
}

// TestShardedDeadLetters: with --shards (and --previous-shards) dlq lists, replays and deletes
// the dead letters of every shard, each in the queue it came from, a draining one included.
func TestShardedDeadLetters(t *testing.T) {
	r, client, insp := startRedis(t)
	layout := shard.Layout{Queue: "ns.sharded", Shards: 3, Previous: []int{1}}
	queueOf := map[string]string{}
	for i := range 12 {
		id := fmt.Sprintf("msg_%02d", i)
		q := layout.QueueFor(id)
		if i == 0 {
			q = layout.Queue // dead-lettered before the change to 3 shards
		}
		queueOf[id] = q
		tk := asynq.NewTaskWithHeaders(task.TypeName("email.bounced"), []byte(`{}`), map[string]string{task.HeaderSvixID: id})
		if _, err := client.Enqueue(tk, asynq.Queue(q), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
		if err := insp.ArchiveTask(q, id); err != nil {
			t.Fatal(err)
		}
	}
	cmd := func(args ...string) (string, error) {
		var out bytes.Buffer
		base := []string{"--redis-url", r.URL(), "--queue", layout.Queue, "--shards", "3", "--previous-shards", "1"}
		err := run(context.Background(), append(args[:1:1], append(base, args[1:]...)...), func(string) string { return "" }, &out)
		return out.String(), err
	}
	out, err := cmd("list", "-o", "json", "--limit", "0")
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatal(err)
	}
	queues := map[string]int{}
	for _, e := range entries {
		if e.Queue != queueOf[e.ID] {
			t.Errorf("%s listed in %q, dead-lettered in %q", e.ID, e.Queue, queueOf[e.ID])
		}
		queues[e.Queue]++
	}
	if len(entries) != 12 || len(queues) != 4 {
		t.Fatalf("listed %d dead letters in queues %v; want 12 in the 3 shards and the old queue", len(entries), queues)
	}
	table, err := cmd("list", "--limit", "0")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 13 || !slices.Equal(strings.Fields(lines[0])[:2], []string{"ID", "QUEUE"}) ||
		!slices.ContainsFunc(lines, func(l string) bool { return slices.Equal(strings.Fields(l)[:2], []string{"msg_00", layout.Queue}) }) {
		t.Fatalf("table without the queue of each dead letter:\n%s", table)
	}
	if out, err := cmd("list", "--offset", "10", "--limit", "5", "-o", "json"); err != nil || strings.Count(out, `"id"`) != 2 {
		t.Fatalf("paging past the first shards: %v %s", err, out)
	}
	if out, err = cmd("replay", "--id", "msg_00,msg_01"); err != nil || !strings.Contains(out, "replayed: 2") {
		t.Fatalf("replay: %v %q", err, out)
	}
	for _, id := range []string{"msg_00", "msg_01"} {
		if info, err := insp.GetTaskInfo(queueOf[id], id); err != nil || info.State != asynq.TaskStatePending {
			t.Errorf("%s after replay: %+v %v; want pending in %s", id, info, err, queueOf[id])
		}
	}
	if out, err = cmd("delete", "--id", "msg_02"); err != nil || !strings.Contains(out, "deleted: 1") {
		t.Fatalf("delete: %v %q", err, out)
	}
	if out, err = cmd("replay", "--all"); err != nil || !strings.Contains(out, "replayed: 9") {
		t.Fatalf("replay --all: %v %q", err, out)
	}
}

// startRedis starts a Redis and returns an Asynq client and inspector for it.
func startRedis(t *testing.T) (*testutil.Redis, *asynq.Client, *asynq.Inspector) {
	r := testutil.StartRedis(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	return r, client, insp
}
