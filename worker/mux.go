package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Handler processes one event. Returning nil marks it done; an error retries it per the retry
// policy, or dead-letters it at once when the error is Permanent.
type Handler interface {
	HandleEvent(ctx context.Context, ev *Event) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, ev *Event) error

// HandleEvent calls f.
func (f HandlerFunc) HandleEvent(ctx context.Context, ev *Event) error { return f(ctx, ev) }

// ErrNoHandler is returned (as a Permanent error) for an event type no pattern matches: such an
// event is dead-lettered at once. Register "*" to handle every otherwise unmatched type.
var ErrNoHandler = errors.New("no handler registered for event type")

// router picks the handler for an event type. Patterns are an exact type ("email.bounced"), a
// prefix ending in ".*" ("email.*"), or "*" for everything; the longest matching pattern wins,
// and an exact type beats any prefix.
type router struct {
	mu       sync.RWMutex
	exact    map[string]Handler
	prefixes []prefixRoute // longest first
}

type prefixRoute struct {
	prefix string // "email." for "email.*", "" for "*"
	h      Handler
}

func validatePattern(pattern string) (prefix string, isPrefix bool, err error) {
	switch {
	case pattern == "*":
		return "", true, nil
	case strings.HasSuffix(pattern, ".*") && !strings.Contains(strings.TrimSuffix(pattern, ".*"), "*"):
		return strings.TrimSuffix(pattern, "*"), true, nil
	case pattern == "" || strings.Contains(pattern, "*"):
		return "", false, fmt.Errorf("worker: invalid pattern %q: use an event type, a prefix like \"email.*\", or \"*\"", pattern)
	}
	return "", false, nil
}

func (r *router) handle(pattern string, h Handler) error {
	if h == nil {
		return fmt.Errorf("worker: nil handler for %q", pattern)
	}
	prefix, isPrefix, err := validatePattern(pattern)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if isPrefix {
		if slices.ContainsFunc(r.prefixes, func(p prefixRoute) bool { return p.prefix == prefix }) {
			return fmt.Errorf("worker: pattern %q registered twice", pattern)
		}
		r.prefixes = append(r.prefixes, prefixRoute{prefix, h})
		slices.SortFunc(r.prefixes, func(a, b prefixRoute) int { return cmp.Compare(len(b.prefix), len(a.prefix)) })
		return nil
	}
	if r.exact == nil {
		r.exact = map[string]Handler{}
	}
	if _, dup := r.exact[pattern]; dup {
		return fmt.Errorf("worker: pattern %q registered twice", pattern)
	}
	r.exact[pattern] = h
	return nil
}

// has reports whether pattern is registered.
func (r *router) has(pattern string) bool {
	prefix, isPrefix, err := validatePattern(pattern)
	if err != nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if isPrefix {
		return slices.ContainsFunc(r.prefixes, func(p prefixRoute) bool { return p.prefix == prefix })
	}
	_, ok := r.exact[pattern]
	return ok
}

// match returns the handler for eventType, or nil.
func (r *router) match(eventType string) Handler {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if h, ok := r.exact[eventType]; ok {
		return h
	}
	for _, p := range r.prefixes {
		if strings.HasPrefix(eventType, p.prefix) {
			return p.h
		}
	}
	return nil
}
