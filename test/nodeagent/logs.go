package nodeagent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// maxLogBytes rotates a container's log file (the kubelet's containerLogMaxSize); one
	// rotated file is kept, and only the current one is served.
	maxLogBytes = 10 << 20
	// maxLineBytes splits longer lines into partial records, as container runtimes do.
	maxLineBytes = 16 << 10
	// followPoll is how often a followed log is checked for new lines.
	followPoll = 100 * time.Millisecond
)

// containerLog is the log file of one container instance in the CRI format the kubelet
// serves from: one record per line, "<RFC3339Nano time> <stdout|stderr> <F|P> <text>", where P
// marks a partial line (split for length).
type containerLog struct {
	path     string
	instance int32
	done     chan struct{}     // closed when the process's output has ended
	echo     func(line []byte) // also gets each record's text, if set

	mu      sync.Mutex
	f       *os.File
	size    int64
	streams []*logStream
}

// openContainerLog creates the log of a container's instance in dir and removes the logs of
// instances older than the previous one (the kubelet keeps the current and the previous).
func openContainerLog(dir string, instance int32) (*containerLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	old := logPath(dir, instance-2)
	_ = os.Remove(old)
	_ = os.Remove(old + ".1")
	l := &containerLog{path: logPath(dir, instance), instance: instance, done: make(chan struct{})}
	var err error
	l.f, err = os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	return l, err
}

func logPath(dir string, instance int32) string {
	return filepath.Join(dir, strconv.Itoa(int(instance))+".log")
}

// stream is a writer for the process's stdout or stderr that records whole lines.
func (l *containerLog) stream(name string) io.Writer {
	s := &logStream{log: l, name: name}
	l.streams = append(l.streams, s)
	return s
}

// logStream turns one output stream into records; one goroutine writes to it.
type logStream struct {
	log  *containerLog
	name string
	buf  []byte
}

func (s *logStream) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		switch {
		case i >= 0 && i <= maxLineBytes:
			s.log.write(s.name, "F", s.buf[:i])
			s.buf = s.buf[i+1:]
		case len(s.buf) > maxLineBytes:
			s.log.write(s.name, "P", s.buf[:maxLineBytes])
			s.buf = s.buf[maxLineBytes:]
		default:
			return len(p), nil
		}
	}
}

func (l *containerLog) write(stream, tag string, text []byte) {
	if l.echo != nil {
		l.echo(text)
	}
	rec := make([]byte, 0, len(text)+48)
	rec = time.Now().UTC().AppendFormat(rec, time.RFC3339Nano)
	rec = fmt.Appendf(rec, " %s %s %s\n", stream, tag, text)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if l.size > 0 && l.size+int64(len(rec)) > maxLogBytes {
		_ = l.f.Close()
		_ = os.Rename(l.path, l.path+".1")
		var err error
		if l.f, err = os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
			l.f = nil
			return
		}
		l.size = 0
	}
	n, _ := l.f.Write(rec)
	l.size += int64(n)
}

// close records what is left of unterminated lines and closes the file; call it once the
// streams are written no more (exec.Cmd.Wait has returned).
func (l *containerLog) close() {
	for _, s := range l.streams {
		if len(s.buf) > 0 {
			l.write(s.name, "F", s.buf)
			s.buf = nil
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
	if !isClosed(l.done) {
		close(l.done)
	}
}

// kubeletHandler serves the kubelet API subset the API server uses for `kubectl logs`.
func (a *Agent) kubeletHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", a.serveContainerLogs)
	return mux
}

func (a *Agent) serveContainerLogs(w http.ResponseWriter, r *http.Request) {
	opts, err := parseLogOptions(r.URL.Query(), time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ns, name, cname := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	pw := a.worker(ns, name)
	if pw == nil {
		http.Error(w, fmt.Sprintf("pod %s/%s is not running on node %s", ns, name, a.cfg.NodeName), http.StatusNotFound)
		return
	}
	path, done, err := pw.logFile(cname, opts.previous)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	if err := streamLog(r.Context(), w, func() { _ = rc.Flush() }, path, done, opts); err != nil && r.Context().Err() == nil {
		a.log.Warn("serving container logs", "pod", ns+"/"+name, "container", cname, "error", err)
	}
}

// logFile is the log file of a container's latest instance (or the one before, previous)
// and a channel closed once that instance's output has ended.
func (w *podWorker) logFile(name string, previous bool) (string, <-chan struct{}, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := slices.IndexFunc(w.containers, func(c *container) bool { return c.spec.Name == name })
	if i < 0 {
		return "", nil, fmt.Errorf("container %s is not valid for pod %s", name, w.key.Name)
	}
	c := w.containers[i]
	switch {
	case c.log == nil && c.waiting != nil:
		return "", nil, fmt.Errorf("container %q in pod %q is waiting to start: %s", name, w.key.Name, c.waiting.Reason)
	case c.log == nil || previous && c.log.instance == 0:
		return "", nil, fmt.Errorf("previous terminated container %q in pod %q not found", name, w.key.Name)
	case previous:
		ended := make(chan struct{})
		close(ended)
		return logPath(filepath.Dir(c.log.path), c.log.instance-1), ended, nil
	}
	return c.log.path, c.log.done, nil
}

// logOptions are the kubelet's containerLogs query parameters.
type logOptions struct {
	follow, previous, timestamps bool
	tail                         int // -1 = all
	since                        time.Time
	limit                        int // 0 = no limit
}

func parseLogOptions(q url.Values, now time.Time) (logOptions, error) {
	o := logOptions{follow: q.Get("follow") == "true", previous: q.Get("previous") == "true",
		timestamps: q.Get("timestamps") == "true", tail: -1}
	sinceSeconds := 0
	for name, dst := range map[string]*int{"tailLines": &o.tail, "limitBytes": &o.limit, "sinceSeconds": &sinceSeconds} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return o, fmt.Errorf("%s must be a non-negative integer, got %q", name, bounded(v))
			}
			*dst = n
		}
	}
	if sinceSeconds > 0 {
		o.since = now.Add(-time.Duration(sinceSeconds) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return o, fmt.Errorf("sinceTime must be an RFC 3339 time, got %q", bounded(v))
		}
		o.since = t
	}
	return o, nil
}

// streamLog writes the log at path to w as the kubelet does: the records since o.since (the
// last o.tail of them), with or without timestamps, up to o.limit bytes; with o.follow, it then
// waits for new records until done is closed and everything is read, or ctx ends.
func streamLog(ctx context.Context, w io.Writer, flush func(), path string, done <-chan struct{}, o logOptions) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(f) // at most maxLogBytes
	if err != nil {
		return err
	}
	data = data[:bytes.LastIndexByte(data, '\n')+1] // a record being written comes with the follow
	records := strings.SplitAfter(string(data), "\n")
	records = records[:len(records)-1]
	if !o.since.IsZero() {
		records = slices.DeleteFunc(records, func(r string) bool {
			t, err := time.Parse(time.RFC3339Nano, strings.SplitN(r, " ", 2)[0])
			return err != nil || t.Before(o.since)
		})
	}
	if o.tail >= 0 && len(records) > o.tail {
		records = records[len(records)-o.tail:]
	}
	written := 0
	// emit writes one record; false once the limit is reached or the client is gone.
	emit := func(record string) bool {
		parts := strings.SplitN(strings.TrimSuffix(record, "\n"), " ", 4) // time, stream, tag, text
		if len(parts) < 4 {
			return true
		}
		out := parts[3]
		if o.timestamps {
			out = parts[0] + " " + out
		}
		if parts[2] == "F" {
			out += "\n"
		}
		if o.limit > 0 && written+len(out) > o.limit {
			out = out[:o.limit-written]
		}
		n, err := io.WriteString(w, out)
		written += n
		return err == nil && (o.limit == 0 || written < o.limit)
	}
	for _, r := range records {
		if !emit(r) {
			return nil
		}
	}
	if _, err := f.Seek(int64(len(data)), io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReader(f)
	var pending strings.Builder
	for finished := false; o.follow; {
		chunk, err := br.ReadString('\n')
		pending.WriteString(chunk)
		if err == nil {
			if !emit(pending.String()) {
				return nil
			}
			pending.Reset()
			continue
		}
		if !errors.Is(err, io.EOF) || finished {
			return ignoreEOF(err)
		}
		flush()
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			finished = true // read what was written before the end, then stop
		case <-time.After(followPoll):
		}
		if rotated(f, path) {
			_ = f.Close()
			if f, err = os.Open(path); err != nil {
				return err
			}
			br.Reset(f)
		}
	}
	return nil
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// rotated reports whether path now names another file than f (the log was rotated).
func rotated(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && !os.SameFile(a, b)
}
