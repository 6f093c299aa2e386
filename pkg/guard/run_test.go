package guard

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
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn and
// returns its pool.
func writeCert(t *testing.T, certPath, keyPath, cn string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	replaceFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	replaceFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func TestTLSAndCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeCert(t, certPath, keyPath, "first")
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.TLS = &config.TLS{Cert: certPath, Key: keyPath} })
	url := "https://" + h.g.Addr().String()
	get := func(pool *x509.CertPool) (*http.Response, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest("GET", url+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+keyUser1)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	resp, err := get(pool)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	pool2 := writeCert(t, certPath, keyPath, "second")
	waitFor(t, 15*time.Second, "new certificate served", func() bool {
		resp, err := get(pool2)
		return err == nil && resp.StatusCode == 200
	})
}

// TestDrain: cancelling Run lets a request in flight finish.
func TestDrain(t *testing.T) {
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.DrainTimeout = 5 * time.Second })
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		client := &http.Client{}
		req, _ := http.NewRequest("POST", h.url+"/v1/chat/completions", jsonReader(chatBody("hold", 10, false)))
		req.Header.Set("Authorization", "Bearer "+keyUser2)
		resp, err := client.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		resp.Body.Close()
		res <- result{code: resp.StatusCode}
	}()
	waitFor(t, 15*time.Second, "request held upstream", func() bool { return h.up.inFlight.Load() == 1 })
	h.cancel()
	waitFor(t, 15*time.Second, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", h.g.Addr().String(), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	h.up.releaseAll()
	r := <-res
	if r.err != nil || r.code != 200 {
		t.Fatalf("in-flight request during drain: %d %v", r.code, r.err)
	}
	select {
	case err := <-h.runDone:
		if err != nil {
			t.Fatal(err)
		}
		h.runDone <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
}
