package devpki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"time"
)

// Serial returns the serial number of a PEM certificate, to revoke it.
func Serial(certPEM []byte) (*big.Int, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, errors.New("devpki: no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, err
	}
	return c.SerialNumber, nil
}

// WriteCRL writes to path a PEM certificate revocation list, signed by ca,
// that revokes the given serial numbers (none: an empty list). number is
// the CRL's sequence number; each new list needs a larger one.
func (ca *CA) WriteCRL(path string, number int64, serials ...*big.Int) error {
	now := time.Now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(number),
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(7 * 24 * time.Hour),
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
