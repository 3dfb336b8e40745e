package deadletter

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func TestListReplayDelete(t *testing.T) {
	r := testutil.StartRedis(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	const q = "ns.hooks"
	for _, id := range []string{"msg_a", "msg_b", "msg_c"} {
		tk := asynq.NewTaskWithHeaders(task.TypeName("email.bounced"), []byte(`{"type":"email.bounced"}`),
			map[string]string{task.HeaderSvixID: id, task.HeaderWebhook: "ns/hooks"})
		if _, err := client.Enqueue(tk, asynq.Queue(q), asynq.TaskID(id)); err != nil {
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

	if out, err = cmd("replay", "--id", "msg_a"); err != nil || !strings.Contains(out, "replayed: 1") {
		t.Fatalf("replay: %v %q", err, out)
	}
	if info, err := insp.GetTaskInfo(q, "msg_a"); err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("msg_a after replay: %+v %v", info, err)
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
