package signing

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The one rule every component applies: what Parse accepts, the controller reports valid and
// the receiver and worker use.
func TestParse(t *testing.T) {
	for v, wantErr := range map[string]string{
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw":         "",
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n":       "",
		"\t whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \r\n": "",
		"":                                      "empty",
		" \n":                                   "empty",
		"whsec_":                                "no key after whsec_",
		"whsec_\n":                              "no key after whsec_",
		"whsec_==":                              "not valid base64 after whsec_",
		"MfKQ9r8GKYqrTwjUPD8ILPZ":               "not a whsec_ secret",
		"WHSEC_MfKQ9r8GKYqrTwjU":                "not a whsec_ secret",
		"whsec_not base64!":                     "not valid base64 after whsec_",
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS": "not valid base64 after whsec_", // bad padding
	} {
		wh, err := Parse([]byte(v))
		if ver, verr := ParseVerifier([]byte(v)); (verr == nil) != (err == nil) || (verr != nil && verr.Error() != err.Error()) || (verr == nil) != (ver != nil) {
			t.Errorf("ParseVerifier(%q) error = %v, Parse's %v", v, verr, err)
		}
		switch {
		case wantErr == "" && (err != nil || wh == nil):
			t.Errorf("Parse(%q) = %v, want a secret", v, err)
		case wantErr != "" && (err == nil || err.Error() != wantErr):
			t.Errorf("Parse(%q) error = %v, want %q", v, err, wantErr)
		case err != nil && strings.Contains(err.Error(), "MfKQ"):
			t.Errorf("Parse error %q contains the value", err)
		}
	}
}

func TestNewSecretParsesAndDiffers(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	if _, err := Parse([]byte(a)); err != nil {
		t.Fatalf("Parse(NewSecret()): %v", err)
	}
	if id := NewMessageID(); !strings.HasPrefix(id, "msg_") || len(id) != 30 || id == NewMessageID() {
		t.Errorf("NewMessageID() = %q", id)
	}
}

// Headers carry one signature per secret, each verifiable with its own secret.
func TestHeadersVerify(t *testing.T) {
	old, current := NewSecret(), NewSecret()
	body := []byte(`{"type":"email.sent"}`)
	h, err := Headers([]string{old, current}, NewMessageID(), time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(h.Get("svix-signature"))); n != 2 {
		t.Fatalf("%d signatures, want 2: %q", n, h.Get("svix-signature"))
	}
	for _, s := range []string{old, current} {
		wh, _ := Parse([]byte(s))
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("verify with one of the secrets: %v", err)
		}
	}
	other, _ := Parse([]byte(NewSecret()))
	if err := other.Verify(body, h); err == nil {
		t.Error("a third secret verified the signature")
	}
	if _, err := Headers([]string{"whsec_"}, "msg_x", time.Now(), body); err == nil {
		t.Error("signing with an invalid secret must fail")
	}
	if h.Get("Content-Type") != "application/json" || h.Get("svix-id") == "" || h.Get("svix-timestamp") == "" {
		t.Errorf("headers %v", http.Header(h))
	}
}
