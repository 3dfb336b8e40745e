// Package signing is the one place that knows Svix signing secrets ("whsec_" + the base64 of a
// key) and the signature headers Resend sends. The controller (SecretResolved), the receiver
// (its secrets directory) and the worker (its sink secret file) all parse secrets with Parse,
// so a value one of them accepts, all of them accept; the sender, the Resend simulator and the
// tests make secrets, ids and headers here.
package signing

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/task"
)

// Prefix starts every signing secret.
const Prefix = "whsec_"

// Parse accepts "whsec_" followed by the standard base64 of a non-empty key, with surrounding
// whitespace (files and Secrets often end in a newline). Errors say what is wrong and never
// include the value, so they can be logged and shown in status.
func Parse(v []byte) (*svix.Webhook, error) {
	key, err := parseKey(v)
	if err != nil {
		return nil, err
	}
	return svix.NewWebhookRaw(key)
}

// parseKey is Parse up to the key: the one definition of a valid secret.
func parseKey(v []byte) ([]byte, error) {
	v = bytes.TrimSpace(v)
	b64, ok := bytes.CutPrefix(v, []byte(Prefix))
	switch {
	case len(v) == 0:
		return nil, errors.New("empty")
	case !ok:
		return nil, errors.New("not a whsec_ secret")
	case len(b64) == 0:
		return nil, errors.New("no key after whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(string(b64))
	switch {
	case err != nil:
		return nil, errors.New("not valid base64 after whsec_")
	case len(key) == 0:
		return nil, errors.New("no key after whsec_")
	}
	return key, nil
}

// NewSecret returns a fresh signing secret of 24 random bytes, as Svix generates them.
func NewSecret() string {
	return Prefix + base64.StdEncoding.EncodeToString(random(24))
}

// NewMessageID returns a fresh Svix-style message id ("msg_" and 26 random hex digits).
func NewMessageID() string { return "msg_" + hex.EncodeToString(random(13)) }

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return b
}

// Headers are the headers Resend sends with a webhook: the JSON content type, svix-id,
// svix-timestamp and one "v1," signature per secret in svix-signature (two while a rotated
// secret is still honoured). Callers add their own User-Agent.
func Headers(secrets []string, id string, ts time.Time, body []byte) (http.Header, error) {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		wh, err := Parse([]byte(s))
		if err != nil {
			return nil, errors.New("signing secret: " + err.Error())
		}
		sig, err := wh.Sign(id, ts, body)
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, sig)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(task.HeaderSvixID, id)
	h.Set(task.HeaderSvixTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(task.HeaderSvixSignature, strings.Join(sigs, " "))
	return h, nil
}
