package cluster_test

// The code blocks of README.md, each verbatim in this file (checked by
// TestReadmeSnippetsAreHere) and run by TestReadmeSnippets.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/cluster"
)

// User is what the loader returns; it crosses members as JSON.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// loadUser stands for a database query.
func loadUser(ctx context.Context, id string) (User, error) {
	return User{ID: id, Name: "user " + id}, nil
}

// startMember starts one member. healthPort is this member's health
// endpoint; members lists every member's health endpoint (host:port),
// this one's included.
func startMember(host string, healthPort int, members []string) (*cluster.Node, *cluster.Loader[User], error) {
	node, err := cluster.NewNode(cluster.Config{
		Name:     "users", // members of one cluster agree on it
		Host:     host,    // this member's address, as the others dial it
		Provider: automanaged.NewWithConfig(time.Second, healthPort, members...),
	})
	if err != nil {
		return nil, nil, err
	}
	// The same loaders on every member, by name, before Start.
	users, err := cluster.Register(node, "user", loadUser, cluster.JSON[User](), flight.WithTimeout(2*time.Second))
	if err != nil {
		return nil, nil, err
	}
	if err := node.Start(); err != nil {
		return nil, nil, err
	}
	return node, users, nil
}

// greet calls the loader from any member: one execution cluster-wide.
func greet(ctx context.Context, users *cluster.Loader[User], id string) (string, error) {
	u, shared, err := users.Do(ctx, id)
	switch {
	case errors.Is(err, cluster.ErrTooLarge), errors.Is(err, cluster.ErrMismatch):
		return "", err // a deployment problem: the members disagree or the value is too big
	case errors.Is(err, cluster.ErrOwnerLost), errors.Is(err, cluster.ErrResponseTimeout):
		return "", err // the owner went away: the caller may try again
	case err != nil:
		return "", err // the loader's own error, as a *cluster.RemoteError
	}
	return fmt.Sprintf("hello %s (shared: %v)", u.Name, shared), nil
}

// stop leaves the cluster within 5 seconds.
func stop(node *cluster.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return node.Shutdown(ctx)
}

// kubernetesConfig is a member's Config in a pod; provider is
// k8s.New() from github.com/asynkron/protoactor-go/cluster/clusterproviders/k8s.
func kubernetesConfig(provider pcluster.ClusterProvider) cluster.Config {
	return cluster.Config{
		Name:           "users",
		Host:           "0.0.0.0",           // listen on every interface of the pod
		Port:           8090,                // the containerPort of the manifest
		AdvertisedHost: os.Getenv("POD_IP"), // the pod's IP, from the downward API
		Provider:       provider,
	}
}

// tlsTransport makes members talk TLS: server holds this member's
// certificate, client the CA that signed the members' certificates.
func tlsTransport(server, client *tls.Config) cluster.Transport {
	return cluster.Transport{
		ServerOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(server))},
		DialOptions:   []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(client))},
	}
}
