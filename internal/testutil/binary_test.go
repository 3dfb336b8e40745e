package testutil

import (
	"os"
	"runtime"
	"runtime/debug"
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

func TestResetPeakRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	func() { // raise the peak: 64 MiB touched, then given back
		b := make([]byte, 64<<20)
		for i := range b {
			b[i] = 1
		}
		runtime.KeepAlive(b)
	}()
	runtime.GC()
	debug.FreeOSMemory()
	before, err := ProcessMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := ResetPeakRSS(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	after, err := ProcessMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.PeakRSS >= before.PeakRSS {
		t.Fatalf("peak %d before the reset, %d after: not lower", before.PeakRSS, after.PeakRSS)
	}
}
