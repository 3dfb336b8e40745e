package testutil

import (
	"os"
	"testing"
)

func TestCPUMeter(t *testing.T) {
	r := StartRedis(t)
	m := NewCPUMeter(r.Client(t), 0)
	before, err := m.Now()
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 50_000_000 { // burn some CPU: the meter must see it
		x ^= i * i
	}
	after, err := m.Now()
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("CPU time %s → %s after burning CPU (%d)", before, after, x)
	}
}

func TestProcessCPU(t *testing.T) {
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Skip("no /proc:", err)
	}
	x := 0
	for i := range 200_000_000 {
		x ^= i * i
	}
	after, err := ProcessCPU(os.Getpid())
	if err != nil || after <= before {
		t.Fatalf("CPU time %s → %s (%v) after burning CPU (%d)", before, after, err, x)
	}
}
