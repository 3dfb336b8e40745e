package testutil

import (
	"os"
	"runtime"
	"testing"
)

func TestProcessMemory(t *testing.T) {
	m, err := ProcessMemory(os.Getpid())
	if runtime.GOOS != "linux" {
		if err == nil {
			t.Fatal("no error outside Linux")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.PeakRSS < m.RSS || m.Anon <= 0 || m.File <= 0 || m.Anon+m.File > m.RSS {
		t.Fatalf("implausible: %+v", m)
	}
	if _, err := ProcessMemory(-1); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
