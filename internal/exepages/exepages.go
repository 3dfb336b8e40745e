// Package exepages gives back the resident pages of the process's own executable that only
// start-up needed.
//
// The binary holds the whole operator. Before main runs, the package initialisers of the
// Kubernetes client libraries register every API type, which touches tens of MiB of the
// binary's read-only code and data. A receiver or worker never uses those pages again, but they
// stay mapped into the process and count in its RSS (about 40 MiB of a receiver's 60 MiB under
// load). Release drops them from the process; the pages the running command does use come back
// on first touch, from the page cache.
package exepages

import "log/slog"

// Released says what Release gave back.
type Released struct {
	Bytes    int64 // resident bytes dropped
	Mappings int   // read-only mappings of the executable looked at
}

// ReleaseLogged calls Release and logs the outcome at debug level: a failure costs only memory.
func ReleaseLogged(log *slog.Logger) {
	r, err := Release()
	if err != nil {
		log.Debug("could not release the binary's start-up pages", "error", err)
		return
	}
	log.Debug("released the binary's start-up pages", "bytes", r.Bytes, "mappings", r.Mappings)
}
