package actor

// Recyclable reports whether k, retired by its shard, may be reused for
// another key (Recycle, then Reuse), saving the allocation of an owner and
// its first flight: the one allocation a distinct key's flight would
// otherwise make besides its context.
//
// That is safe only when nothing outside the shard can still read the
// first flight: its Do callers got their result on their own Waiters (see
// Waiter.Val and Flight.queue), DoChan callers on their channels, and it
// had no WithTimeout or retry timer (a timer that fired may still post
// about it). Messages that may still arrive about a reused first flight (a Leave
// posted as the flight was answered) carry the flight's gen of their time
// and are ignored. fn's context is not part of what is reused (see
// flightCtx), except with Env.PrivateCtx.
//
// Called by the shard only, on an idle owner.
func (k *Owner[K, V]) Recyclable() bool {
	f := &k.first
	return k.Idle() && f.timer == nil && f.retry == nil
}

// Recycle empties k, once Recyclable, for reuse: no key, no flight, no
// reference to a value or a caller, its first flight free again under a new
// gen. Called by the shard only.
func (k *Owner[K, V]) Recycle() {
	env, gen := k.env, k.first.gen+1
	if c := k.first.ctx; env.PrivateCtx && c != nil && len(env.spare) < maxSpare {
		// Nothing outside the shard holds it (Env.PrivateCtx), and the
		// owner is idle: the flight has ended, and no message about it
		// reaches its context any more.
		*c = flightCtx{}
		env.spare = append(env.spare, c)
	}
	*k = Owner[K, V]{env: env}
	k.first.owner, k.first.gen = k, gen
}

// maxSpare bounds Env.spare: as many as a shard keeps retired owners.
const maxSpare = 64

// Reuse makes a recycled k the owner of key, as NewOwner(key, env) would.
// Called by the shard only.
func (k *Owner[K, V]) Reuse(key K) { k.Key = key }
