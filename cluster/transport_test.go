package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/cluster/internal/racecheck"
)

// A member listening on every interface with no advertised address would
// advertise 0.0.0.0, which the others cannot dial: Start refuses it.
func TestUnroutableAddressRefused(t *testing.T) {
	for _, cfg := range []fcluster.Config{
		{Host: "0.0.0.0"},
		{Host: "::"},
		{Host: "0.0.0.0", AdvertisedHost: "0.0.0.0:7000"},
		{Host: "127.0.0.1", AdvertisedHost: "224.0.0.1"},
	} {
		cfg.Name, cfg.Provider = "unroutable", test.NewTestProvider(test.NewInMemAgent())
		node, err := fcluster.NewNode(cfg)
		require.NoError(t, err)
		err = node.Start()
		require.ErrorIs(t, err, fcluster.ErrUnroutable, "%+v", cfg)
		assert.Empty(t, node.Address(), "not started")
		require.NoError(t, node.Close())
	}
}

// Members listening on 0.0.0.0 and advertising 127.0.0.1 form a cluster
// and serve each other's calls.
func TestAdvertisedHost(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	loaders := make([]*fcluster.Loader[string], 2)
	nodes := membersWith(t, 2, func(i int, cfg *fcluster.Config) {
		cfg.Host, cfg.AdvertisedHost = "0.0.0.0", "127.0.0.1"
	}, func(i int, node *fcluster.Node) {
		l, err := fcluster.Register(node, "v", func(ctx context.Context, key string) (string, error) { return key, nil }, nil)
		require.NoError(t, err)
		loaders[i] = l
	})
	for _, n := range nodes {
		host, _, err := net.SplitHostPort(n.Address())
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1", host)
	}
	callsEachOther(t, loaders)
}

// callsEachOther makes member 0 call keys until one was owned by member 1,
// and checks the value.
func callsEachOther(t *testing.T, loaders []*fcluster.Loader[string]) {
	t.Helper()
	for k := 0; loaders[1].Stats().Owner.Flights == 0; k++ {
		key := "k" + strconv.Itoa(k)
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		v, _, err := loaders[0].Do(ctx, key)
		cancel()
		require.NoError(t, err)
		assert.Equal(t, key, v)
	}
}

// Members whose connections use TLS (Transport's dial and server options)
// form a cluster and serve each other's calls.
func TestTLSTransport(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	server, client := selfSignedTLS(t)
	loaders := make([]*fcluster.Loader[string], 2)
	membersWith(t, 2, func(i int, cfg *fcluster.Config) {
		cfg.Transport = tlsTransport(server, client) // the README's
	}, func(i int, node *fcluster.Node) {
		l, err := fcluster.Register(node, "v", func(ctx context.Context, key string) (string, error) { return key, nil }, nil)
		require.NoError(t, err)
		loaders[i] = l
	})
	callsEachOther(t, loaders)
}

// selfSignedTLS returns a server and a client configuration for one
// self-signed certificate valid for 127.0.0.1.
func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "flight-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client
}
