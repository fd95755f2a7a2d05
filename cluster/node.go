package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/actorflight/flight"
)

// Config says how a Node joins its cluster. Only Name and Provider are
// required; every other zero value picks the default named on the field.
type Config struct {
	// Name is the cluster's name: members of one cluster must agree on it.
	Name string
	// Host and Port are where this member listens for other members
	// (protoactor remote, gRPC). Default "127.0.0.1" and 0 (a free port).
	// Host "0.0.0.0" or "::" listens on every interface; AdvertisedHost
	// must then say where the others reach this member.
	Host string
	Port int
	// AdvertisedHost is the address the other members dial to reach this
	// member, as "host" or "host:port"; without a port, the port this
	// member listens on. Default: Host. In a container or a pod, set it to
	// the pod's IP and Host to "0.0.0.0". Start refuses an advertised
	// address nobody can dial (0.0.0.0, ::, a multicast address) with
	// ErrUnroutable.
	AdvertisedHost string
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
	// ResponseTimeout bounds how long one member's call of a key waits for
	// the key's owner, retries included, whatever the callers' contexts
	// say: past it the callers get ErrResponseTimeout and the owner is told
	// that this member left. It catches an owner that froze or vanished
	// without the membership noticing. It must exceed the loader's longest
	// execution. Default 30s; -1 means no bound (only the callers'
	// contexts).
	ResponseTimeout time.Duration
	// MaxValueSize is the largest encoded value, in bytes, this member
	// sends to callers (as the owner) or accepts from an owner (as a
	// caller). A value larger than the owner's limit reaches every caller
	// as ErrTooLarge; one larger than a calling member's limit reaches that
	// member's callers as ErrTooLarge. Default 4 MiB (gRPC's usual message
	// limit); -1 means no limit.
	MaxValueSize int
	// CloseTimeout bounds Close (see Shutdown). Default 10s.
	CloseTimeout time.Duration
	// Idle is how long a key's grain stays active with no call before it
	// stops itself. Default 30s. A later call activates it again.
	Idle time.Duration
	// Transport configures the connections between members.
	Transport Transport
	// Logger receives the logs of the member's protoactor actor system,
	// cluster and remote layers, and this package's own, at WARN: a member
	// dropped without leaving (and let back in), a dropped member that
	// rejoined, a connection closed after the drain wait on Close, a
	// contained panic of protoactor's shutdown. Pass flight.WithLogger to
	// Register for the loader's panics. Default: discard.
	Logger *slog.Logger
}

// Transport configures protoactor remote, the gRPC connections between
// members. The zero value is protoactor's defaults: plaintext gRPC, no
// server options.
type Transport struct {
	// DialOptions are used to dial the other members. Default: plaintext
	// (insecure credentials). For TLS:
	// grpc.WithTransportCredentials(credentials.NewTLS(cfg)).
	DialOptions []grpc.DialOption
	// ServerOptions configure the gRPC server the other members dial: for
	// TLS grpc.Creds(credentials.NewTLS(cfg)), keepalive parameters, and so
	// on. The server's receive limit is lifted by default, because
	// protoactor packs several messages to one member into one gRPC
	// message: values are bounded by Config.MaxValueSize instead. A
	// grpc.MaxRecvMsgSize here overrides that.
	ServerOptions []grpc.ServerOption
	// CallOptions apply to the stream each member opens to another.
	CallOptions []grpc.CallOption
	// HandshakeTimeout bounds the opening of a connection to another
	// member: its gRPC stream and the member's answer to protoactor's
	// connect request. protoactor waits for that answer without a bound,
	// and a member that is stopping, or frozen, never gives it; the
	// connection then fails after HandshakeTimeout (and protoactor's 2 s
	// pause), and the member's address counts as terminated. Default 2s.
	HandshakeTimeout time.Duration
	// WriterQueueSize is the initial capacity, in messages, of the queue in
	// front of each connection to another member, allocated for each other
	// member as a ring of interface values (16 bytes a slot). The ring
	// doubles when a burst fills it and never shrinks, so it holds the
	// largest backlog seen to that member. Default 1024 (16 KiB per
	// member); protoactor's own default, 1,000,000, is 16 MB per member
	// held for the life of the process.
	WriterQueueSize int
	// WriterBatchSize is how many queued messages are sent in one gRPC
	// message at most. Default 1000 (protoactor's).
	WriterBatchSize int
	// ConnectAttempts is how many times a connection to another member is
	// attempted before that member's address is deemed terminated (its
	// watchers are told, and its queued messages dropped). protoactor waits
	// 2 s after each failed attempt inside the connection's actor, which
	// holds up its own stop meanwhile. Default 1, so that a member that
	// left is given up on within about 2 s (protoactor's default is 5).
	ConnectAttempts int
}

// options returns the protoactor remote options for t, with the
// transport's gRPC receive limit lifted (see ServerOptions).
func (t Transport) options() []remote.ConfigOption {
	server := append([]grpc.ServerOption{grpc.MaxRecvMsgSize(math.MaxInt32)}, t.ServerOptions...)
	dial := t.DialOptions
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	handshake := t.HandshakeTimeout
	if handshake <= 0 {
		handshake = defaultHandshakeTimeout
	}
	dial = append(dial[:len(dial):len(dial)], grpc.WithChainStreamInterceptor(handshakeBound(handshake)))
	opts := []remote.ConfigOption{remote.WithServerOptions(server...), remote.WithDialOptions(dial...)}
	if len(t.CallOptions) > 0 {
		opts = append(opts, remote.WithCallOptions(t.CallOptions...))
	}
	queue := t.WriterQueueSize
	if queue <= 0 {
		queue = defaultWriterQueueSize
	}
	opts = append(opts, remote.WithEndpointWriterQueueSize(queue))
	if t.WriterBatchSize > 0 {
		opts = append(opts, remote.WithEndpointWriterBatchSize(t.WriterBatchSize))
	}
	attempts := t.ConnectAttempts
	if attempts <= 0 {
		attempts = defaultConnectAttempts
	}
	opts = append(opts, func(c *remote.Config) { c.MaxRetryCount = attempts })
	return opts
}

// Node is one member of a flight cluster: it owns the flights of the keys
// the cluster places on it, and forwards its callers' calls for other keys
// to their owners.
//
// Create one with NewNode, register every loader with Register, then call
// Start; Close it when done. The zero value is not usable. Methods are safe
// for concurrent use. Each Node has its own protoactor ActorSystem, a gRPC
// server and the goroutines of protoactor's cluster (gossip, the
// provider's loops), so plan one Node per process.
type Node struct {
	cfg    Config
	system *actor.ActorSystem
	pcfg   *pcluster.Config
	cl     *pcluster.Cluster

	mu      sync.Mutex        // guards loaders, started, closed, closing
	loaders map[string]*entry // by loader name; fixed once started
	started bool
	closed  bool
	closing chan struct{} // closed when the first Shutdown's work is done
	hurry   chan struct{} // closed when a Shutdown's ctx ended: skip waits

	topo *eventstream.Subscription // ClusterTopology events, set by Start
	pids *pidCache                 // where recently called keys' grains are
	// rejoin lets dropped members back in; set by Start.
	rejoin *rejoiner

	// topoMu guards members only; it is taken inside protoactor's event
	// publishing, so it is never held while calling protoactor.
	topoMu  sync.Mutex
	members []string // addresses in the latest topology, sorted

	calls   atomic.Uint64  // numbers the calls this member sends
	running sync.WaitGroup // owner-side goroutines waiting for a result
	gate    sync.RWMutex   // running.Add holds it for reading; Close for writing
	stopped bool           // guarded by gate: no new owner-side goroutine

	// remoteShutdown is protoactor's Remote.Shutdown; tests replace it.
	remoteShutdown func(graceful bool)
}

// inline runs an actor's mailbox on the goroutine that posts to it
// (protoactor's synchronized dispatcher) instead of a goroutine per burst:
// grains and requesters never block in Receive, and this saves a
// goroutine hand-off per message (see BenchmarkLocalOwner).
var inline = []actor.PropsOption{actor.WithDispatcher(actor.NewSynchronizedDispatcher(256))}

// kindPrefix namespaces this package's cluster kinds among the user's own.
const kindPrefix = "flight."

// Defaults of the Config fields whose zero value means "the default".
const (
	defaultMaxValueSize     = 4 << 20
	defaultResponseTimeout  = 30 * time.Second
	defaultCloseTimeout     = 10 * time.Second
	defaultConnectAttempts  = 1
	defaultHandshakeTimeout = 2 * time.Second
	defaultWriterQueueSize  = 1024
)

// handshakeBound makes every client stream fail when neither it nor its
// first message arrived within d: it cancels the stream's context. Later
// messages are not bounded. protoactor's endpoint writer opens one stream
// per member and waits for the member's ConnectResponse with no deadline
// (remote/endpoint_writer.go:112) inside its actor's Started handler, and
// a member whose remote is stopping reads but no longer answers (its
// endpoint reader is suspended): without a bound, the writer's own member
// could not stop its remote until the other member's 10 s gRPC stop
// timeout.
func handshakeBound(d time.Duration) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, cancel := context.WithCancel(ctx)
		timer := time.AfterFunc(d, cancel)
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			timer.Stop()
			cancel()
			return nil, err
		}
		return &boundStream{ClientStream: s, timer: timer, cancel: cancel}, nil
	}
}

// boundStream is a client stream whose first RecvMsg ends its handshake
// bound; the stream's context is released when a RecvMsg fails (the
// stream ended).
type boundStream struct {
	grpc.ClientStream
	timer  *time.Timer
	cancel context.CancelFunc
}

func (s *boundStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.timer.Stop()
	if err != nil {
		s.cancel()
	}
	return err
}

// NewNode prepares a member; it does not contact anyone until Start.
func NewNode(cfg Config) (*Node, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("%w: Config.Name is empty", ErrConfig)
	}
	if cfg.Provider == nil {
		return nil, fmt.Errorf("%w: Config.Provider is nil", ErrConfig)
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
	switch {
	case cfg.ResponseTimeout == 0:
		cfg.ResponseTimeout = defaultResponseTimeout
	case cfg.ResponseTimeout < 0:
		cfg.ResponseTimeout = 0
	}
	switch {
	case cfg.MaxValueSize == 0:
		cfg.MaxValueSize = defaultMaxValueSize
	case cfg.MaxValueSize < 0:
		cfg.MaxValueSize = 0
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = defaultCloseTimeout
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
		pids:    newPIDCache(cfg.Idle),
	}
	n.pcfg = pcluster.Configure(cfg.Name, cfg.Provider, cfg.Lookup, remote.Configure(cfg.Host, cfg.Port, cfg.Transport.options()...))
	return n, nil
}

// add registers a loader's grain kind; Register calls it before Start.
func (n *Node) add(e *entry) error {
	if e.name == "" || strings.ContainsAny(e.name, "/") {
		return fmt.Errorf("%w: invalid name %q", ErrNoLoader, e.name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return fmt.Errorf("%w: Register %q after Close", flight.ErrClosed, e.name)
	case n.started:
		return fmt.Errorf("%w: Register %q after Start", ErrStarted, e.name)
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
//
// Start returns an error wrapping ErrUnroutable, and starts nothing, when
// the address it would advertise cannot be dialled by other members; one
// wrapping ErrStart when protoactor could not start the member (a port in
// use); one wrapping flight.ErrClosed after Close. A second Start does
// nothing.
func (n *Node) Start() (err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("%w: Start after Close", flight.ErrClosed)
	}
	if n.started {
		return nil
	}
	if err := n.advertise(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil { // protoactor panics on listen/provider errors
			err = fmt.Errorf("%w: %v", ErrStart, r)
		}
	}()
	n.cl = pcluster.New(n.system, n.pcfg)
	cl := n.cl
	rj := newRejoiner(n.system.ID, n.cfg.Logger, func() *remote.BlockList { return cl.Remote.BlockList() })
	n.rejoin = rj
	// protoactor's MemberList.Members reads its field without a lock: keep
	// our own copy from the topology events instead. Subscribed before
	// StartMember, so it runs before protoactor's own subscribers (the
	// gossiper's, which hands the topology to the gossip actor).
	n.topo = n.system.EventStream.Subscribe(func(ev any) {
		if u, ok := ev.(*pcluster.GossipUpdate); ok {
			rj.gossip(u)
			return
		}
		if t, ok := ev.(*pcluster.ClusterTopology); ok {
			rj.topology(t)
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
	n.remoteShutdown = n.cl.Remote.Shutdown
	n.started = true
	return nil
}

// advertise checks the address the member will advertise and, when it is
// not Host, has protoactor advertise it: AdvertisedHost with the listening
// port when it names none. With Port 0 that port is picked here, by
// listening on Host:0 for a moment.
func (n *Node) advertise() error {
	cfg := &n.cfg
	adv := cfg.AdvertisedHost
	if adv == "" {
		adv = cfg.Host
	}
	host, port, err := net.SplitHostPort(adv)
	if err != nil { // no port
		host, port = strings.Trim(adv, "[]"), ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && (ip.IsUnspecified() || ip.IsMulticast()) {
		return fmt.Errorf("%w: %q (Config.Host %q, Config.AdvertisedHost %q): set AdvertisedHost to an address the other members can dial", ErrUnroutable, adv, cfg.Host, cfg.AdvertisedHost)
	}
	if cfg.AdvertisedHost == "" {
		return nil
	}
	if port == "" {
		if n.pcfg.RemoteConfig.Port == 0 {
			l, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, "0"))
			if err != nil {
				return fmt.Errorf("%w: %w", ErrStart, err)
			}
			n.pcfg.RemoteConfig.Port = l.Addr().(*net.TCPAddr).Port
			_ = l.Close()
		}
		port = strconv.Itoa(n.pcfg.RemoteConfig.Port)
	}
	n.pcfg.RemoteConfig.AdvertisedHost = net.JoinHostPort(host, port)
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

// Close is Shutdown bounded by Config.CloseTimeout (default 10s).
func (n *Node) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.CloseTimeout)
	defer cancel()
	return n.Shutdown(ctx)
}

// leaveWait is how long Shutdown leaves the other members to see this one
// go (through the provider and gossip) before it stops its remote server,
// as protoactor's graceful cluster shutdown does.
const leaveWait = 2 * time.Second

// Shutdown leaves the cluster, in this order:
//
//  1. calls are refused from now on with flight.ErrClosed, and this
//     member's waiting callers get flight.ErrClosed at once;
//  2. the flights this member owns are cancelled; their callers on other
//     members are answered with a retry signal and retry on another
//     member; Shutdown waits for the loaders to return;
//  3. the member leaves the provider and gossip, then gives the others 2s
//     to see it gone (not when it is alone), and stops its remote server:
//     gracefully, waiting up to 2s more for the other members to close
//     their connections (a frozen member never does), then at once.
//
// When ctx ends before that is done, the waits are cut short and Shutdown
// returns an error wrapping ctx.Err(); the rest (a loader that ignores its
// context, protoactor's own stop timeouts after a peer froze) goes on in
// the background, and a later Shutdown or Close waits for it, within its
// own ctx. Otherwise Shutdown returns nil; it is idempotent.
//
// protoactor's remote can panic with "send on closed channel" while it
// stops (an inbound connection ending at that moment); Shutdown contains
// that panic (logged at WARN on Config.Logger) and finishes the stop.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		n.closing = make(chan struct{})
		n.hurry = make(chan struct{})
		go n.shutdown(n.started)
	}
	closing, hurry := n.closing, n.hurry
	n.mu.Unlock()
	select {
	case <-closing:
		return nil
	case <-ctx.Done():
	}
	n.mu.Lock()
	select {
	case <-hurry:
	default:
		close(hurry)
	}
	n.mu.Unlock()
	select {
	case <-closing: // it finished meanwhile, or the waits were all it had left
		return nil
	default:
		return fmt.Errorf("flight: cluster: close: %w", ctx.Err())
	}
}

// shutdown does Shutdown's work on a goroutine of its own, and closes
// n.closing when done.
func (n *Node) shutdown(started bool) {
	defer close(n.closing)
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
	n.pids.close()
	if started {
		n.rejoin.close()
		n.leave()
		n.system.EventStream.Unsubscribe(n.topo)
	}
}

// leave is protoactor's graceful Cluster.Shutdown, step by step, with its
// fixed 2 s sleep skipped for a lone member or cut short by n.hurry (see
// waitOthersGone), and a panic of the remote's stop contained.
func (n *Node) leave() {
	c := n.cl
	alone := len(n.Members()) <= 1
	c.Gossip.SetState(pcluster.GracefullyLeftKey, &emptypb.Empty{})
	c.ActorSystem.Shutdown()
	_ = c.Config.ClusterProvider.Shutdown(true)
	c.IdentityLookup.Shutdown()
	n.waitOthersGone(alone)
	c.IdentityLookup.Shutdown()
	c.Gossip.Shutdown()
	n.stopRemote()
}

// waitOthersGone gives the other members leaveWait to see this one leave
// (through the provider and gossip) while its remote server still answers,
// as protoactor's graceful shutdown does; n.hurry cuts it short. A member
// alone in its view does not wait. Stopping the server sooner would make
// members still sending to this one (a grain moved by the topology change,
// gossip) connect to a closed port: protoactor's endpoint writer then
// retries for 5 × 2 s inside its Started handler, and every member stopping
// its remote waits that out.
func (n *Node) waitOthersGone(alone bool) {
	if alone {
		return
	}
	t := time.NewTimer(leaveWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-n.hurry:
	}
}

// drainWait bounds the graceful stop of the remote's gRPC server:
// GracefulStop waits until every inbound connection has closed, and the
// other members close theirs when this one tells them it leaves — all but a
// frozen or cut-off member, which never does. protoactor then waits a
// fixed 10 s (remote/server.go:106) before it stops the server; stopRemote
// stops it after drainWait instead.
const drainWait = 2 * time.Second

// stopRemote stops protoactor remote gracefully, bounded by drainWait (cut
// short by n.hurry): past it, the server is stopped at once, which closes
// the connections left (their members notice as when a member dies).
//
// Its endpoint manager's stop sends on a channel per inbound connection,
// and each connection closes its channel when it ends: one ending at that
// moment makes the send panic ("send on closed channel",
// remote/endpoint_manager.go:119 in protoactor-go
// v0.0.0-20240822202345-3c0e61ca19c9). The send is the stop's last step but
// one: the remaining inbound connections are then not told that this
// member leaves, and the gRPC server is not stopped. stopRemote recovers
// that panic and stops the server at once, too.
func (n *Node) stopRemote() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				n.cfg.Logger.Warn("flight: cluster: contained a panic of protoactor remote's shutdown; stopping its server at once", slog.Any("panic", r))
				n.remoteShutdown(false)
			}
		}()
		n.remoteShutdown(true)
	}()
	t := time.NewTimer(drainWait)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
		n.cfg.Logger.Warn("flight: cluster: a member did not close its connection to this one within the drain wait (frozen or cut off?); closing it", slog.Duration("wait", drainWait))
	case <-n.hurry:
	}
	// gRPC's Stop may be called while GracefulStop waits: it closes every
	// connection, and GracefulStop then returns.
	n.remoteShutdown(false)
	<-done
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
