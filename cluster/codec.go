package cluster

import "encoding/json"

// Codec encodes a loader's value on the member that ran the loader and
// decodes it on every member that has callers waiting for it. Values cross
// members as bytes: a codec must round-trip every value its loader returns.
//
// A Codec is used from many goroutines at once and must be safe for that.
// Errors from Marshal reach every caller of the flight (as a *RemoteError);
// errors from Unmarshal reach the callers on the decoding member.
type Codec[V any] interface {
	Marshal(v V) ([]byte, error)
	Unmarshal(data []byte) (V, error)
}

// JSON returns the default codec: encoding/json. Unexported fields are not
// carried, and interface-typed values decode to their JSON shapes (maps,
// float64), as with json.Unmarshal. Cost: one json.Marshal on the owner per
// execution and one json.Unmarshal per member with callers.
func JSON[V any]() Codec[V] { return jsonCodec[V]{} }

type jsonCodec[V any] struct{}

func (jsonCodec[V]) Marshal(v V) ([]byte, error) { return json.Marshal(v) }

func (jsonCodec[V]) Unmarshal(data []byte) (V, error) {
	var v V
	err := json.Unmarshal(data, &v)
	return v, err
}
