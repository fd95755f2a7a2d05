// Package cluster runs flights cluster-wide: while a loader runs for a key,
// every caller of that key on every member of a protoactor-go cluster waits
// for that one execution and gets its result.
//
// See the README's "Cluster mode" section for the guarantees when members
// join, leave or die, and for figures.
package cluster
