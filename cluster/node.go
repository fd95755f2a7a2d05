package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
)

// Config says how a Node joins its cluster. Only Name and Provider are
// required; every other zero value picks the default named on the field.
type Config struct {
	// Name is the cluster's name: members of one cluster must agree on it.
	Name string
	// Host and Port are where this member listens for other members
	// (protoactor remote, gRPC). Default "127.0.0.1" and 0 (a free port).
	Host string
	Port int
	// Provider finds the other members: protoactor's automanaged provider
	// (no external service), its in-memory test provider, or consul, etcd,
	// k8s, zookeeper. Required.
	Provider pcluster.ClusterProvider
	// Lookup places each (loader, key) grain on a member. Default: disthash
	// (rendezvous hashing over the members that registered the loader).
	Lookup pcluster.IdentityLookup
	// Retries is how many times a call is sent again after the key's owner
	// was lost (it stopped, died, or became unreachable) before the call
	// fails with ErrOwnerLost. Each retry resolves the owner anew, waiting
	// RetryBackoff, doubled each time, before it. Default 3; -1 means none.
	Retries int
	// RetryBackoff is the wait before the first retry. Default 200ms.
	RetryBackoff time.Duration
	// Idle is how long a key's grain stays active with no call before it
	// stops itself. Default 30s. A later call activates it again.
	Idle time.Duration
	// Logger receives the logs of the member's protoactor actor system,
	// cluster and remote layers (this package logs nothing itself; pass
	// flight.WithLogger to Register for the loader's panics). Default:
	// discard.
	Logger *slog.Logger
}

// Node is one member of a flight cluster: it owns the flights of the keys
// the cluster places on it, and forwards its callers' calls for other keys
// to their owners.
//
// Create one with NewNode, register every loader with Register, then call
// Start; Close it when done. The zero value is not usable. Methods are safe
// for concurrent use. Each Node has its own protoactor ActorSystem (about
// 3 MB), a gRPC server and the goroutines of protoactor's cluster (gossip,
// the provider's loops), so plan one Node per process.
type Node struct {
	cfg    Config
	system *actor.ActorSystem
	pcfg   *pcluster.Config
	cl     *pcluster.Cluster

	mu      sync.Mutex        // guards loaders, started, closed
	loaders map[string]*entry // by loader name; fixed once started
	started bool
	closed  bool

	topo *eventstream.Subscription // ClusterTopology events, set by Start

	// topoMu guards members only; it is taken inside protoactor's event
	// publishing, so it is never held while calling protoactor.
	topoMu  sync.Mutex
	members []string // addresses in the latest topology, sorted

	calls   atomic.Uint64  // numbers the calls this member sends
	running sync.WaitGroup // owner-side goroutines waiting for a result
	gate    sync.RWMutex   // running.Add holds it for reading; Close for writing
	stopped bool           // guarded by gate: no new owner-side goroutine
}

// inline runs an actor's mailbox on the goroutine that posts to it
// (protoactor's synchronized dispatcher) instead of a goroutine per burst:
// grains and requesters never block in Receive, and this saves a
// goroutine hand-off per message (see BenchmarkLocalOwner).
var inline = []actor.PropsOption{actor.WithDispatcher(actor.NewSynchronizedDispatcher(256))}

// kindPrefix namespaces this package's cluster kinds among the user's own.
const kindPrefix = "flight."

// NewNode prepares a member; it does not contact anyone until Start.
func NewNode(cfg Config) (*Node, error) {
	if cfg.Name == "" {
		return nil, errors.New("flight: cluster: Config.Name is empty")
	}
	if cfg.Provider == nil {
		return nil, errors.New("flight: cluster: Config.Provider is nil")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Lookup == nil {
		cfg.Lookup = disthash.New()
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = 3
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = 200 * time.Millisecond
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return log }))
	n := &Node{
		cfg:     cfg,
		system:  system,
		loaders: map[string]*entry{},
	}
	n.pcfg = pcluster.Configure(cfg.Name, cfg.Provider, cfg.Lookup, remote.Configure(cfg.Host, cfg.Port))
	return n, nil
}

// add registers a loader's grain kind; Register calls it before Start.
func (n *Node) add(e *entry) error {
	if e.name == "" || strings.ContainsAny(e.name, "/") {
		return fmt.Errorf("%w: invalid name %q", ErrNoLoader, e.name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started || n.closed {
		return errors.New("flight: cluster: Register after Start")
	}
	if _, dup := n.loaders[e.name]; dup {
		return fmt.Errorf("%w: %q registered twice", ErrNoLoader, e.name)
	}
	n.loaders[e.name] = e
	props := actor.PropsFromProducer(func() actor.Actor { return &grain{node: n, entry: e} }, inline...)
	n.pcfg.Kinds[e.kind] = pcluster.NewKind(e.kind, props)
	return nil
}

// Start joins the cluster: it starts the remote server, gossip and the
// provider, and makes this member an owner for the loaders registered so
// far. protoactor's StartMember waits a fixed second for the membership to
// settle, so Start takes at least that long; calls made right after it may
// still see a partial membership (they are correct either way; a key may
// just be owned by another member a moment later).
func (n *Node) Start() (err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("flight: cluster: Start after Close")
	}
	if n.started {
		return nil
	}
	defer func() {
		if r := recover(); r != nil { // protoactor panics on listen/provider errors
			err = fmt.Errorf("flight: cluster: start: %v", r)
		}
	}()
	n.cl = pcluster.New(n.system, n.pcfg)
	// protoactor's MemberList.Members reads its field without a lock: keep
	// our own copy from the topology events instead.
	n.topo = n.system.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*pcluster.ClusterTopology); ok {
			addrs := make([]string, 0, len(t.Members))
			for _, m := range t.Members {
				addrs = append(addrs, m.Address())
			}
			slices.Sort(addrs)
			n.topoMu.Lock()
			n.members = addrs
			n.topoMu.Unlock()
		}
	})
	n.cl.StartMember()
	n.started = true
	return nil
}

// Address returns the member's remote address (host:port), empty before
// Start.
func (n *Node) Address() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.started {
		return ""
	}
	return n.system.Address()
}

// Members returns the addresses of the cluster's members as this member
// last saw them (protoactor's latest ClusterTopology), sorted; nil before
// Start. Members' views agree once the provider and gossip have settled
// (about one provider refresh after a change).
func (n *Node) Members() []string {
	n.topoMu.Lock()
	defer n.topoMu.Unlock()
	return slices.Clone(n.members)
}

// deadWait bounds how long a retry waits for a dead owner to leave the
// membership: about protoactor's activation timeout, which a retry would
// otherwise risk.
const deadWait = 5 * time.Second

// waitGone waits until addr is no longer a member (as this member sees the
// topology), at most limit, polling every few milliseconds; it returns
// ctx.Err() if ctx ends first.
func (n *Node) waitGone(ctx context.Context, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for slices.Contains(n.Members(), addr) && time.Now().Before(deadline) {
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	return nil
}

// Close leaves the cluster. Local callers waiting get flight.ErrClosed;
// flights this member owns are cancelled and their callers on other
// members are told to retry elsewhere; then protoactor's graceful cluster
// shutdown runs (it deregisters from the provider and waits about 2s for
// the rest of the cluster to notice). Close is idempotent; calls after it
// get flight.ErrClosed.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	started := n.started
	n.mu.Unlock()

	for _, e := range n.loaders { // fixed: no Register after closed
		e.closeFront()
	}
	for _, e := range n.loaders {
		_ = e.owner.Close() // answers every owner-side call with ErrClosed
	}
	n.gate.Lock()
	n.stopped = true
	n.gate.Unlock()
	n.running.Wait()
	if started {
		n.cl.Shutdown(true)
		n.system.EventStream.Unsubscribe(n.topo)
	}
	return nil
}

// track runs f on a new goroutine counted by Close, unless Close has begun,
// in which case it returns false.
func (n *Node) track(f func()) bool {
	n.gate.RLock()
	defer n.gate.RUnlock()
	if n.stopped {
		return false
	}
	n.running.Add(1)
	go func() {
		defer n.running.Done()
		f()
	}()
	return true
}
