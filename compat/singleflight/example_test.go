package singleflight_test

import (
	"fmt"

	"github.com/actorflight/flight/compat/singleflight"
)

// A Group needs no constructor; code written for x/sync's singleflight
// works unchanged.
func ExampleGroup_Do() {
	var g singleflight.Group
	v, err, shared := g.Do("config", func() (any, error) {
		return "loaded once", nil
	})
	fmt.Println(v, err, shared)
	// Output: loaded once <nil> false
}

// Forget makes the next call start a new flight instead of joining the
// running one.
func ExampleGroup_Forget() {
	var g singleflight.Group
	started, release := make(chan struct{}), make(chan struct{})
	first := g.DoChan("key", func() (any, error) {
		close(started)
		<-release
		return "stale", nil
	})
	<-started
	g.Forget("key")
	second := g.DoChan("key", func() (any, error) { return "fresh", nil })
	close(release)
	fmt.Println((<-first).Val, (<-second).Val)
	// Output: stale fresh
}
