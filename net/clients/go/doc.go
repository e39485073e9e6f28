// Package rush is a Go client for Rush, the flash-sale reservation engine. It speaks Rush's
// binary protocol (docs/PROTOCOL.md in the Rush repository: fixed-size little-endian frames
// over TCP) with the standard library only.
//
// # Clients
//
// Three clients share one interface, Doer:
//
//   - Client: one connection, one request at a time (calls from several goroutines are
//     serialized). The simplest; one round trip per call.
//   - Pipeline: one connection, many requests in flight, safe for any number of goroutines.
//     Requests queued meanwhile go out in one write; responses are matched by request id in
//     whatever order the server sends them. In flight is bounded by Config.MaxInFlight.
//   - ShardAware: one Pipeline per shard port, from the topology a PING reports; each
//     request goes to the shard that owns its account, so the server never forwards it
//     between cores. Admin operations go to Config.AdminAddr.
//
// Requests are typed values (Reserve, Confirm, Cancel, QuerySKU, QueryAccount,
// QueryReservation, Ping, and the admin PutSKU, AdjustStock, Pause, Resume, Deposit,
// Withdraw); Do returns a Reply with the result code and the body the opcode carries.
//
// # Results and errors
//
// A refusal is a result, not an error: Do returns SOLD_OUT, LIMIT_EXCEEDED, ... in
// Reply.Result with a nil error. Reply.Err converts a refusal into a *ResultError for callers
// that prefer errors. Do's error is non-nil only when no well-formed reply arrived:
//
//   - the context ended (errors.Is(err, context.DeadlineExceeded) or context.Canceled);
//   - a *ProtocolError: the server sent bytes that are not a valid response (bad magic,
//     version, opcode, length, a truncated frame, an unknown result code or state, a
//     non-zero reserved byte, ...). Decoding never panics, whatever the bytes;
//   - a *ConnectionError: the server could not be reached, or reconnecting gave up;
//   - ErrClosed, after Close.
//
// In the first three cases the request's outcome is unknown to the caller.
//
// # Exactly once
//
// Every state-changing request carries a key (Reserve.Key, Confirm.Key, ...), unique per
// account. Sending the same request with the same key again never applies it twice: if the
// first attempt took effect, the retry is answered ResultDuplicate with the original outcome
// in Reply.Original and the object as it is now. So the answer to an unknown outcome is to
// retry with the same key, and the clients do exactly that when a connection breaks: they
// reconnect and re-send what was in flight, unchanged (Config.ReconnectAttempts times in a
// row at most). A client that lost a RESERVE's response can also read it back with
// QueryReservation{Target: ByReserveKey(key)}.
//
// # Extending the protocol
//
// Frame layouts are tables (layout.go): each field has its PROTOCOL.md name, offset and
// width, and every byte no field covers is reserved. A test holds the tables to PROTOCOL.md.
// A new opcode (an AUTH frame, say) or a body that depends on the result code (RATE_LIMITED
// with a retry-after hint) is a new row, not new parsing code; a variable-length frame
// (RESERVE_ORDER with several SKU lines) adds a repeated group to the table format, and the
// encoder and decoder already take every frame size from the tables.
package rush
