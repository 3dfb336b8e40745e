package controllers_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/resend-webhook-operator/resend-webhook-operator/cmd/manager"
	"github.com/resend-webhook-operator/resend-webhook-operator/internal/testutil"
)

// The manager's metrics are served over HTTPS to callers the API server authenticates and
// authorizes: no token → 401, a token without the metrics-reader role → 403, with it → 200.
// The role is the one in config/rbac.
func TestManagerMetricsNeedAuthorizedToken(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	m := startManager(t, func(o *manager.Options) {
		o.MetricsBindAddress = "127.0.0.1:" + strconv.Itoa(port)
		o.WatchNamespaces = []string{ns} // nothing to reconcile: the shared manager may run too
	})
	t.Cleanup(m.stop)

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scraper"}}
	mustCreate(t, sa)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))}}
	if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the endpoint's certificate is self-signed
	}}
	scrape := func(token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/metrics", port), nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		return resp.StatusCode, string(body), err
	}
	expect := func(token string, want int) string {
		t.Helper()
		var body string
		testutil.Eventually(t, 45*time.Second, fmt.Sprintf("HTTP %d", want), func() error {
			code, b, err := scrape(token)
			if err != nil {
				return err
			}
			if code != want {
				return fmt.Errorf("HTTP %d", code)
			}
			body = b
			return nil
		})
		return body
	}
	expect("", http.StatusUnauthorized)
	expect(token, http.StatusForbidden)

	var role rbacv1.ClusterRole
	readConfig(t, "config/rbac/metrics_reader_role.yaml", &role)
	role.Name = "metrics-reader-" + ns
	mustCreate(t, &role)
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa.Name}},
	}
	mustCreate(t, binding)
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), binding)
		_ = k8s.Delete(context.Background(), &role)
	})
	// The filter caches a denial for 30 s per caller; a new token carries a new credential id,
	// so it is a new caller and gets a fresh decision (the deadline covers the cache anyway).
	tr = &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(601))}}
	if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatal(err)
	}
	body := expect(tr.Status.Token, http.StatusOK)
	if !strings.Contains(body, "controller_runtime_reconcile_total") {
		t.Errorf("metrics lack controller-runtime's series:\n%.500s", body)
	}
}
