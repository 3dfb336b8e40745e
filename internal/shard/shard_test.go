package shard

import (
	"fmt"
	"slices"
	"testing"
)

func TestSlotMatchesRedisCluster(t *testing.T) {
	// Values CLUSTER KEYSLOT returns, and the CRC-16/XMODEM check value.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	for key, want := range map[string]uint16{"foo": 12182, "somekey": 11058, "": 0} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestQueuesOneShardIsTheQueueItself(t *testing.T) {
	for _, n := range []int{-1, 0, 1} {
		if got := Queues("ns.hook", n); !slices.Equal(got, []string{"ns.hook"}) {
			t.Errorf("Queues(n=%d) = %v", n, got)
		}
	}
}

func TestQueuesSpreadOverSlotRanges(t *testing.T) {
	for _, base := range []string{"default.resend", "shop.orders", "a"} {
		for _, n := range []int{2, 3, 4, 7, 16, MaxShards} {
			qs := Queues(base, n)
			if len(qs) != n {
				t.Fatalf("%s n=%d: %d names", base, n, len(qs))
			}
			seen := map[string]bool{}
			for k, q := range qs {
				slot := int(Slot(q))
				if slot < k*slots/n || slot >= (k+1)*slots/n {
					t.Errorf("%s n=%d shard %d: %s in slot %d, outside its range", base, n, k, q, slot)
				}
				if seen[q] {
					t.Errorf("%s n=%d: %s twice", base, n, q)
				}
				seen[q] = true
				if q != fmt.Sprintf("%s.%d", base, k) && !slices.Contains([]byte(q[len(base):]), '-') {
					t.Errorf("unexpected name %s", q)
				}
			}
			if !slices.Equal(qs, Queues(base, n)) {
				t.Errorf("%s n=%d: names not stable", base, n)
			}
		}
	}
}

func TestIndexIsStableAndEven(t *testing.T) {
	// Golden values: a change would send re-deliveries of queued events to other shards.
	for id, want := range map[string]int{"msg_2Kx1": 3, "msg_abc": 1, "": 1} {
		if got := Index(id, 4); got != want {
			t.Errorf("Index(%q, 4) = %d, want %d", id, got, want)
		}
	}
	counts := make([]int, 4)
	for i := range 40000 {
		counts[Index(fmt.Sprintf("msg_%d", i), 4)]++
	}
	for k, c := range counts {
		if c < 9000 || c > 11000 {
			t.Errorf("shard %d got %d of 40000 ids", k, c)
		}
	}
	if Index("msg_abc", 1) != 0 || Index("msg_abc", 0) != 0 {
		t.Error("one shard must be index 0")
	}
}

func TestLayout(t *testing.T) {
	l := Layout{Queue: "q", Shards: 4, Previous: []int{1, 2}}
	all := l.All()
	want := append(Queues("q", 4), "q")
	for _, q := range Queues("q", 2) {
		if !slices.Contains(want, q) {
			want = append(want, q)
		}
	}
	if !slices.Equal(all, want) {
		t.Errorf("All() = %v, want %v", all, want)
	}
	for i := range 200 {
		id := fmt.Sprintf("msg_%d", i)
		q := l.QueueFor(id)
		if q != Queues("q", 4)[Index(id, 4)] {
			t.Fatalf("QueueFor(%s) = %s", id, q)
		}
		earlier := l.EarlierQueuesFor(id)
		if !slices.Contains(earlier, "q") || slices.Contains(earlier, q) || len(earlier) > 2 {
			t.Fatalf("EarlierQueuesFor(%s) = %v (now %s)", id, earlier, q)
		}
	}
	if got := (Layout{Queue: "q", Shards: 1}).EarlierQueuesFor("x"); got != nil {
		t.Errorf("no previous layouts: %v", got)
	}
	if got := l.Draining(1); !slices.Equal(got, []string{"q"}) {
		t.Errorf("Draining(1) = %v", got)
	}
	if got := (Layout{Queue: "q", Shards: 1}).Draining(1); got != nil {
		t.Errorf("the current layout drains nothing: %v", got)
	}
}
