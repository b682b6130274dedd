// Package testpki makes throwaway certificate authorities for tests of TLS
// on loopback: a CA, server certificates for 127.0.0.1, client certificates
// by Subject CommonName (how a gateway's certificate names it), and their
// PEM files, as an operator would hand them to the binaries' flags. Keys
// are ECDSA P-256 and everything is valid from an hour ago for an hour.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made for one test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// Pool holds Cert alone: a tls.Config's RootCAs or ClientCAs.
	Pool *x509.CertPool
}

// NewCA makes a self-signed CA named name.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := template(tb, name)
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	cert := create(tb, tmpl, tmpl, key, key)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool}
}

// Server issues a server certificate for 127.0.0.1.
func (ca *CA) Server(tb testing.TB) tls.Certificate {
	tb.Helper()
	tmpl := template(tb, "127.0.0.1")
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return ca.issue(tb, tmpl)
}

// Client issues a client certificate whose Subject CommonName is cn.
func (ca *CA) Client(tb testing.TB, cn string) tls.Certificate {
	tb.Helper()
	tmpl := template(tb, cn)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(tb, tmpl)
}

// WriteCA writes the CA's certificate to dir/name as PEM and returns the
// file's path.
func (ca *CA) WriteCA(tb testing.TB, dir, name string) string {
	tb.Helper()
	return writePEM(tb, filepath.Join(dir, name), "CERTIFICATE", ca.Cert.Raw)
}

// WriteFiles writes cert and its key to dir/name.pem and dir/name.key.
func WriteFiles(tb testing.TB, dir, name string, cert tls.Certificate) (certFile, keyFile string) {
	tb.Helper()
	key, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		tb.Fatal(err)
	}
	return writePEM(tb, filepath.Join(dir, name+".pem"), "CERTIFICATE", cert.Certificate[0]),
		writePEM(tb, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", key)
}

func (ca *CA) issue(tb testing.TB, tmpl *x509.Certificate) tls.Certificate {
	tb.Helper()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	key := newKey(tb)
	cert := create(tb, tmpl, ca.Cert, key, ca.Key)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func template(tb testing.TB, cn string) *x509.Certificate {
	tb.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		tb.Fatal(err)
	}
	return &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
}

func create(tb testing.TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

func writePEM(tb testing.TB, path, typ string, der []byte) string {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
