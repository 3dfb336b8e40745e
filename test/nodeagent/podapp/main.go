// Command podapp is the workload of the node agent's integration test: a small HTTP server
// that says which pod answered, reports on a mounted file, and lets the test flip its
// readiness or make it crash.
//
//	GET /          "pod=<POD_NAME> version=<VERSION>" (logged to stdout)
//	GET /healthz   200, or 500 after POST /unhealthy
//	GET /readyz    200, or 503 after POST /unready (until POST /ready)
//	GET /file      SHA-256 of the --file content (hex), read on every request
//	POST /crash    exits with status 3
//	POST /ignore-sigterm  from now on, SIGTERM is logged and ignored (only SIGKILL ends it)
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "listen address")
	file := flag.String("file", "", "file whose SHA-256 GET /file reports")
	flag.Parse()
	pod, version := os.Getenv("POD_NAME"), os.Getenv("VERSION")
	var unready, unhealthy, ignoreTerm atomic.Bool

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("served / to %s", r.RemoteAddr)
		fmt.Fprintf(w, "pod=%s version=%s\n", pod, version)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if unhealthy.Load() {
			http.Error(w, "told to be unhealthy", http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /unhealthy", func(http.ResponseWriter, *http.Request) { unhealthy.Store(true) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if unready.Load() {
			http.Error(w, "told to be unready", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("POST /unready", func(http.ResponseWriter, *http.Request) { unready.Store(true) })
	mux.HandleFunc("POST /ready", func(http.ResponseWriter, *http.Request) { unready.Store(false) })
	mux.HandleFunc("GET /file", func(w http.ResponseWriter, _ *http.Request) {
		b, err := os.ReadFile(*file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		sum := sha256.Sum256(b)
		fmt.Fprintln(w, hex.EncodeToString(sum[:]))
	})
	mux.HandleFunc("POST /ignore-sigterm", func(http.ResponseWriter, *http.Request) { ignoreTerm.Store(true) })
	mux.HandleFunc("POST /crash", func(http.ResponseWriter, *http.Request) {
		log.Printf("crashing on request")
		os.Exit(3)
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.SetOutput(os.Stdout)
	log.Printf("podapp listening on %s pod=%s version=%s", ln.Addr(), pod, version)
	fmt.Fprintln(os.Stderr, "podapp: this line goes to stderr")
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	go func() {
		for range signals {
			if ignoreTerm.Load() {
				log.Printf("SIGTERM received, ignored")
				continue
			}
			log.Printf("SIGTERM received, shutting down")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
			return
		}
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
