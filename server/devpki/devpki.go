// Package devpki makes throwaway certificate authorities and certificates
// for dev mode and tests. Nothing it makes belongs in production: keys are
// written unencrypted and the CAs are generated on the spot.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority held in memory.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA makes a self-signed CA valid from an hour ago for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"jeton dev"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Leaf is an issued certificate and its key, PEM-encoded.
type Leaf struct {
	CertPEM, KeyPEM []byte
}

// LeafOptions describe a certificate to issue.
type LeafOptions struct {
	CommonName string
	URI        string   // URI SAN, e.g. a SPIFFE ID
	DNSNames   []string // server names
	IPs        []net.IP
	Server     bool // server auth; otherwise client auth
	NotBefore  time.Time
	NotAfter   time.Time
}

// Issue signs a leaf certificate. Zero NotBefore/NotAfter mean an hour ago
// and a year from now.
func (ca *CA) Issue(o LeafOptions) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.CommonName},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
	}
	if o.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if o.URI != "" {
		u, err := url.Parse(o.URI)
		if err != nil {
			return nil, fmt.Errorf("devpki: uri: %w", err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}, nil
}

// Write writes the leaf as <dir>/<name>.pem and <dir>/<name>-key.pem and
// returns both paths.
func (l *Leaf) Write(dir, name string) (cert, key string, err error) {
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(cert, l.CertPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(key, l.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	return cert, key, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("devpki: crypto/rand failed: " + err.Error())
	}
	return n
}

// Identities used by the dev bundle.
const (
	SponsorID   = "spiffe://jeton.dev/sponsor/demo"
	TTPID       = "spiffe://jeton.dev/ttp/demo"
	CustodianID = "spiffe://jeton.dev/ttp/custodian"
)

// Bundle is the set of files a dev deployment needs.
type Bundle struct {
	Dir string
	// ServerCA verifies both listeners' server certificate.
	ServerCA string
	// Server certificate and key, for 127.0.0.1, ::1 and localhost.
	ServerCert, ServerKey string
	// SponsorCA and TTPCA issue the clients of the public and trusted
	// listener; each listener trusts only its own.
	SponsorCA, TTPCA string
	// Client certificates and keys.
	SponsorCert, SponsorKey     string
	TTPCert, TTPKey             string
	CustodianCert, CustodianKey string
	// The authorities themselves, in memory only, to issue more
	// certificates in tests. Their keys are never written to disk.
	ServerAuthority, SponsorAuthority, TTPAuthority *CA
}

// Generate writes a fresh bundle into dir (created 0700 if needed): a server
// CA and certificate, a sponsor CA with one sponsor client, and a TTP CA
// with a TTP client and a custodian client.
func Generate(dir string) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devpki: %w", err)
	}
	b := &Bundle{Dir: dir}
	const year = 365 * 24 * time.Hour
	serverCA, err := NewCA("jeton dev server CA", year)
	if err != nil {
		return nil, fmt.Errorf("devpki: %w", err)
	}
	sponsorCA, err := NewCA("jeton dev sponsor CA", year)
	if err != nil {
		return nil, fmt.Errorf("devpki: %w", err)
	}
	ttpCA, err := NewCA("jeton dev TTP CA", year)
	if err != nil {
		return nil, fmt.Errorf("devpki: %w", err)
	}
	b.ServerAuthority, b.SponsorAuthority, b.TTPAuthority = serverCA, sponsorCA, ttpCA
	for _, f := range []struct {
		path *string
		name string
		ca   *CA
	}{{&b.ServerCA, "ca.pem", serverCA}, {&b.SponsorCA, "sponsor-ca.pem", sponsorCA}, {&b.TTPCA, "ttp-ca.pem", ttpCA}} {
		*f.path = filepath.Join(dir, f.name)
		if err := os.WriteFile(*f.path, f.ca.PEM, 0o644); err != nil {
			return nil, fmt.Errorf("devpki: %w", err)
		}
	}
	for _, l := range []struct {
		cert, key *string
		name      string
		ca        *CA
		opts      LeafOptions
	}{
		{&b.ServerCert, &b.ServerKey, "server", serverCA, LeafOptions{CommonName: "jetond", Server: true,
			DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}},
		{&b.SponsorCert, &b.SponsorKey, "sponsor", sponsorCA, LeafOptions{CommonName: "sponsor-demo", URI: SponsorID}},
		{&b.TTPCert, &b.TTPKey, "ttp", ttpCA, LeafOptions{CommonName: "ttp-demo", URI: TTPID}},
		{&b.CustodianCert, &b.CustodianKey, "custodian", ttpCA, LeafOptions{CommonName: "custodian", URI: CustodianID}},
	} {
		leaf, err := l.ca.Issue(l.opts)
		if err != nil {
			return nil, fmt.Errorf("devpki: %w", err)
		}
		if *l.cert, *l.key, err = leaf.Write(dir, l.name); err != nil {
			return nil, fmt.Errorf("devpki: %w", err)
		}
	}
	return b, nil
}
