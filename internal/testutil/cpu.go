package testutil

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// CPUMeter adds up the CPU time (user and system) of a process and of a redis-server:
// benchmarks divide it by the work done. Unlike throughput it hardly moves when other
// processes take turns on the same cores, so it compares contenders on a busy machine.
type CPUMeter struct {
	redis *redis.Client
	pid   int // 0: this process
}

// NewCPUMeter measures the process pid (0: this one) and the redis-server rdb talks to.
func NewCPUMeter(rdb *redis.Client, pid int) *CPUMeter { return &CPUMeter{redis: rdb, pid: pid} }

// Now is the CPU time used so far.
func (m *CPUMeter) Now() (time.Duration, error) {
	var own time.Duration
	if m.pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		own = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	} else {
		var err error
		if own, err = ProcessCPU(m.pid); err != nil {
			return 0, err
		}
	}
	redisCPU, err := RedisCPU(context.Background(), m.redis)
	if err != nil {
		return 0, err
	}
	return own + redisCPU, nil
}

// RedisCPU is the CPU time (user and system, all its threads) the redis-server rdb talks to
// has used so far, from INFO cpu (in microseconds, finer than /proc's ticks).
func RedisCPU(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var seconds float64
	for line := range strings.Lines(info) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), ":")
		if name == "used_cpu_user" || name == "used_cpu_sys" {
			s, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return 0, fmt.Errorf("redis INFO cpu %s=%q: %w", name, value, err)
			}
			seconds += s
		}
	}
	return time.Duration(seconds * float64(time.Second)), nil
}

// ProcessCPU is the CPU time (user and system) the process pid has used so far, from
// /proc/<pid>/stat, in clock ticks of 10ms. Linux only: elsewhere it returns an error.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it are plain numbers.
	_, rest, ok := strings.Cut(string(b), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime and stime: fields 14 and 15 of the line
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond
