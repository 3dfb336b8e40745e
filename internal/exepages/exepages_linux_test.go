package exepages

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

func TestReadOnlyMappings(t *testing.T) {
	const exe = "/usr/local/bin/rwh operator" // a path with a space
	smaps := `00400000-00a00000 r-xp 00000000 fd:01 42 /usr/local/bin/rwh operator
Size:               6144 kB
Rss:                4096 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00a00000-00c00000 r--p 00600000 fd:01 42 /usr/local/bin/rwh operator
Size:               2048 kB
Rss:                1024 kB
Anonymous:             8 kB
VmFlags: rd mr mw me
00c00000-00d00000 r--p 00800000 fd:01 42 /usr/local/bin/rwh operator
Rss:                 512 kB
Anonymous:             0 kB
00d00000-00e00000 rw-p 00900000 fd:01 42 /usr/local/bin/rwh operator
Rss:                 512 kB
Anonymous:           512 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 43 /usr/lib/libc.so.6
Rss:                 100 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 rw-p 00000000 00:00 0
Rss:                 100 kB
Anonymous:           100 kB
7f0000200000-7f0000300000 r--s 00000000 fd:01 42 /usr/local/bin/rwh operator
Rss:                 100 kB
Anonymous:             0 kB
`
	got := readOnlyMappings([]byte(smaps), exe)
	want := []mapping{
		{start: 0x400000, end: 0xa00000, resident: 4096 << 10}, // code
		{start: 0xc00000, end: 0xd00000, resident: 512 << 10},  // read-only data never written
	}
	if !slices.Equal(got, want) {
		t.Fatalf("readOnlyMappings = %+v, want %+v (not: copied-on-write pages, writable, shared, other files)", got, want)
	}
}

// TestRelease runs Release in this test binary: pages are dropped, the resident file-backed
// memory goes down, and the code that runs afterwards still works (its pages come back).
func TestRelease(t *testing.T) {
	before := residentFile(t)
	r, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := residentFile(t)
	if r.Mappings == 0 || r.Bytes <= 0 {
		t.Fatalf("Release = %+v: nothing released", r)
	}
	if after >= before {
		t.Errorf("RssFile %d kB before, %d kB after: not lower", before, after)
	}
	if s := strings.Repeat(strconv.Itoa(len(os.Args)), 3); len(s) != 3 { // code paged back in
		t.Fatal(s)
	}
	t.Logf("released %d bytes of %d mappings; RssFile %d → %d kB", r.Bytes, r.Mappings, before, after)
}

func residentFile(t *testing.T) int64 {
	t.Helper()
	m, err := testutil.ProcessMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return m.File >> 10
}
