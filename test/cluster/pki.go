package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// KubeletPKI is a private CA for the API server ↔ kubelet connection: it signs the kubelet
// endpoint's serving certificate (the API server checks it, --kubelet-certificate-authority)
// and the API server's client certificate (the kubelet endpoint checks it), so only this API
// server can read container logs.
type KubeletPKI struct {
	CAFile, ClientCertFile, ClientKeyFile string

	ca    *x509.Certificate
	caKey crypto.Signer
}

func newKubeletPKI(dir string) (*KubeletPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &KubeletPKI{
		CAFile:         filepath.Join(dir, "kubelet-ca.crt"),
		ClientCertFile: filepath.Join(dir, "apiserver-kubelet-client.crt"),
		ClientKeyFile:  filepath.Join(dir, "apiserver-kubelet-client.key"),
	}
	caDER, caKey, err := p.issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "sandbox-kubelet-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	})
	if err != nil {
		return nil, err
	}
	if p.ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	p.caKey = caKey
	clientDER, clientKey, err := p.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientKey)
	if err != nil {
		return nil, err
	}
	for path, block := range map[string]*pem.Block{
		p.CAFile:         {Type: "CERTIFICATE", Bytes: caDER},
		p.ClientCertFile: {Type: "CERTIFICATE", Bytes: clientDER},
		p.ClientKeyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// issue creates a key and a certificate for tmpl, signed by the CA (self-signed while the CA
// itself is being made).
func (p *KubeletPKI) issue(tmpl *x509.Certificate) ([]byte, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Minute)
	tmpl.NotAfter = time.Now().Add(7 * 24 * time.Hour)
	parent, signer := tmpl, crypto.Signer(key)
	if p.ca != nil {
		parent, signer = p.ca, p.caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	return der, key, err
}

// ServerTLS is the TLS configuration of a kubelet endpoint served on ip: a certificate for ip
// signed by the CA, and client certificates required and verified against the CA.
func (p *KubeletPKI) ServerTLS(ip string) (*tls.Config, error) {
	addr := net.ParseIP(ip)
	if addr == nil {
		return nil, fmt.Errorf("kubelet PKI: %q is not an IP address", ip)
	}
	der, key, err := p.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "sandbox-node-agent"},
		IPAddresses: []net.IP{addr},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
