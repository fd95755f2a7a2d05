package flight_test

import (
	"errors"

	"github.com/actorflight/flight"
)

// The model of WithStaleIfError and WithBreaker, for TestModel's "retain"
// family (see model_test.go): a value past its TTL kept stale ticks more,
// and per key a breaker that opens after `failures` consecutive failed
// flights for `cooldown` ticks, half-open after it, dropped by deadlines
// that follow the coordinator's own rules (see WithBreaker): cooldown after
// the last failure while closed, cooldown after it went half-open if no
// flight of the key is live then.

const (
	kStale = "stale" // a stale value; Do callers see a plain value
	kOpen  = "open"  // ErrOpen
)

// mBreaker is one key's breaker state.
type mBreaker struct {
	fails     int
	gen       int
	openUntil int // tick; meaningful once fails >= failures
	open      bool
	gone      bool
}

type mBevent struct {
	b       *mBreaker
	key     int
	gen, at int
}

// isOpen reports whether key's breaker refuses a call now.
func (m *model) isOpen(key int) bool {
	b := m.brk[key]
	return b != nil && b.fails >= m.cfg.failures && m.now < b.openUntil
}

// staleOf returns key's value while it is kept (fresh or stale), or nil.
func (m *model) staleOf(key int) *mEntry {
	if e := m.entries[key]; m.cfg.stale > 0 && e != nil && e.kind == kValue && m.now < e.expires+m.cfg.stale {
		return e
	}
	return nil
}

// refused answers c if key's breaker is open: the stale value, or ErrOpen.
func (m *model) refused(c *mCaller) bool {
	if m.cfg.failures == 0 || !m.isOpen(c.key) {
		return false
	}
	if e := m.staleOf(c.key); e != nil && m.now >= e.expires {
		m.st.Stale++
		m.answer(c, kStale, e.val, true)
		return true
	}
	m.st.Rejected++
	m.answer(c, kOpen, "", false)
	return true
}

// verdict is told the outcome of an attached flight as it is answered; for
// a failure it returns the stale value to answer with, if any.
func (m *model) verdict(f *mFlight, kind string) *mEntry {
	failed := kind != kValue
	if m.cfg.failures > 0 {
		b := m.brk[f.key]
		switch {
		case failed:
			if b == nil {
				b = &mBreaker{}
				m.brk[f.key] = b
			}
			b.fails++
			b.gen++
			if b.fails >= m.cfg.failures {
				b.openUntil = m.now + m.cfg.cooldown
				if !b.open {
					b.open = true
					m.st.Open++
				}
			}
			m.bq = append(m.bq, mBevent{b, f.key, b.gen, m.now + m.cfg.cooldown})
		case b != nil:
			m.dropBreaker(f.key)
		}
	}
	if failed {
		return m.staleOf(f.key)
	}
	return nil
}

func (m *model) dropBreaker(key int) {
	b := m.brk[key]
	if b == nil {
		return
	}
	delete(m.brk, key)
	b.gone = true
	if b.open {
		b.open = false
		m.st.Open--
	}
}

// breakerTick handles the breaker deadlines of the tick just begun.
func (m *model) breakerTick() {
	for len(m.bq) > 0 && m.bq[0].at <= m.now {
		ev := m.bq[0]
		m.bq = m.bq[1:]
		b := ev.b
		if b.gone || ev.gen != b.gen {
			continue
		}
		k := m.keys[ev.key]
		switch {
		case b.open:
			b.open = false
			m.st.Open--
			m.bq = append(m.bq, mBevent{b, ev.key, b.gen, m.now + m.cfg.cooldown})
			modelHalfOpen.Add(1)
		case b.fails >= m.cfg.failures && (k.open != nil || k.exec != nil):
			m.bq = append(m.bq, mBevent{b, ev.key, b.gen, m.now + m.cfg.cooldown})
		default:
			m.dropBreaker(ev.key)
		}
	}
}

// classifyResult is classify for a DoChan Result, which shows Stale.
func classifyResult(r flight.Result[string]) answer {
	if r.Stale {
		if r.Err != nil {
			return answer{"stale with an error " + r.Err.Error(), r.Val, r.Shared}
		}
		return answer{kStale, r.Val, r.Shared}
	}
	if errors.Is(r.Err, flight.ErrOpen) {
		return answer{kOpen, r.Val, r.Shared}
	}
	return classify(r.Val, r.Shared, r.Err)
}
