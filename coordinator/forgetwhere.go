package coordinator

// forgetWhereMsg asks a shard to forget every key match accepts, as a
// forgetMsg does one key; done is closed once it has.
type forgetWhereMsg[K comparable] struct {
	match func(K) bool
	done  chan struct{}
}

// ForgetWhere forgets every key that match accepts, on every shard: each
// such key's running flight is detached and its retained result dropped, as
// Forget does for one key. It returns once every shard has done so, so a
// call that starts after it returns finds neither. It is how a Coordinator
// made with WithScope forgets a key in every scope (Forget has no ctx to
// tell one): its cost is a message to every shard and a scan of each
// shard's keys and retained results. match runs on the shards' goroutines;
// it must be quick and must not block.
func (c *Engine[K, V, R]) ForgetWhere(match func(K) bool) {
	for _, s := range c.shards {
		if !s.api.Enter() {
			return // closed: nothing is left to forget
		}
		m := &forgetWhereMsg[K]{match: match, done: make(chan struct{})}
		s.send(m)
		<-m.done
		s.api.Exit()
	}
}

// forgetWhere handles a forgetWhereMsg (shard actor only).
func (s *shard[K, V, R]) forgetWhere(m *forgetWhereMsg[K]) {
	if s.store != nil {
		// Another shard's eviction may write this store's map (under its
		// lock): read it under the read lock, then remove what matched.
		var drop []K
		s.store.mu.RLock()
		for key := range s.store.entries {
			if m.match(key) {
				drop = append(drop, key)
			}
		}
		s.store.mu.RUnlock()
		for _, key := range drop {
			s.store.remove(key)
		}
	}
	if s.brk != nil {
		// Forget closes the key's breaker (see forgetMsg); only this shard
		// writes the breakers' map, so it reads it without the lock.
		var drop []K
		for key := range s.brk.m {
			if m.match(key) {
				drop = append(drop, key)
			}
		}
		for _, key := range drop {
			s.brk.remove(key)
		}
	}
	for k := range s.keys.all() {
		if m.match(k.Key) {
			k.Forget()
		}
	}
}
