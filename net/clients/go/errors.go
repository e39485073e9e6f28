package rush

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by calls on a Client, Pipeline or ShardAware after Close, and by
// calls that were in flight when Close was called.
var ErrClosed = errors.New("rush: client closed")

// ErrNoAdminAddress is returned by ShardAware for an admin operation when Config.AdminAddr
// was not set: admin operations are accepted only on the server's admin listener.
var ErrNoAdminAddress = errors.New("rush: admin operation without Config.AdminAddr")

// ResultError is a refusal as an error value, from Reply.Err. Do itself never returns it:
// a refusal such as SOLD_OUT is a normal reply.
type ResultError struct {
	Opcode    Opcode
	RequestID uint64
	Result    ResultCode
	// Original is the original outcome for ResultDuplicate, else equal to Result.
	Original ResultCode
}

// Error describes the refusal, with the original outcome of a DUPLICATE.
func (e *ResultError) Error() string {
	if e.Result == ResultDuplicate {
		return fmt.Sprintf("rush: %v request %d: DUPLICATE of %v", e.Opcode, e.RequestID, e.Original)
	}
	return fmt.Sprintf("rush: %v request %d: %v", e.Opcode, e.RequestID, e.Result)
}

// ResultOf returns the result code carried by err when it is (or wraps) a *ResultError.
func ResultOf(err error) (ResultCode, bool) {
	var result *ResultError
	if errors.As(err, &result) {
		return result.Result, true
	}
	return 0, false
}

// ProtocolErrorKind says what was wrong with the bytes the server sent.
type ProtocolErrorKind uint8

// The kinds of malformed response. BadMagic, BadVersion, UnknownOpcode, BadLength and
// Truncated are fatal: the frame boundaries are lost, so the connection is closed and every
// request in flight on it fails with the error. The others concern one well-framed response:
// only the request it answers fails.
const (
	// BadMagic: a frame does not start with bytes 52 53.
	BadMagic ProtocolErrorKind = iota + 1
	// BadVersion: the version byte is not 1.
	BadVersion
	// UnknownOpcode: the opcode byte names no operation.
	UnknownOpcode
	// BadLength: the length field is not the size of the opcode's response.
	BadLength
	// Truncated: the server closed the connection in the middle of a frame.
	Truncated
	// FlagsNotZero: the header's reserved flags field is not zero.
	FlagsNotZero
	// ReservedNotZero: a reserved body byte is not zero (Offset says which).
	ReservedNotZero
	// InvalidField: an enumerated field holds a value this version does not define: an
	// unknown result code, reservation state, or a paused flag other than 0 and 1.
	InvalidField
	// UnexpectedResponse: a response for a request id that is not in flight on the
	// connection. Fatal: the pairing of requests and responses cannot be trusted.
	UnexpectedResponse
	// OpcodeMismatch: a response's opcode is not its request's.
	OpcodeMismatch
)

var protocolErrorNames = [...]string{
	BadMagic:           "bad magic",
	BadVersion:         "unsupported protocol version",
	UnknownOpcode:      "unknown opcode",
	BadLength:          "bad frame length",
	Truncated:          "truncated frame",
	FlagsNotZero:       "header flags not zero",
	ReservedNotZero:    "reserved byte not zero",
	InvalidField:       "invalid field value",
	UnexpectedResponse: "response to a request not in flight",
	OpcodeMismatch:     "response opcode differs from the request's",
}

// String names the kind.
func (k ProtocolErrorKind) String() string {
	if int(k) < len(protocolErrorNames) && protocolErrorNames[k] != "" {
		return protocolErrorNames[k]
	}
	return fmt.Sprintf("ProtocolErrorKind(%d)", uint8(k))
}

// ProtocolError reports a malformed response from the server. The request's outcome is
// unknown: retry it with the same key, which makes the retry exactly-once.
type ProtocolError struct {
	Kind ProtocolErrorKind
	// Opcode and RequestID are the frame's, when the header got that far.
	Opcode    Opcode
	RequestID uint64
	// Field names the invalid field (InvalidField) as PROTOCOL.md does.
	Field string
	// Offset is the frame offset of the offending byte (ReservedNotZero, FlagsNotZero,
	// InvalidField), or the number of bytes received (Truncated).
	Offset int
	// Value is the offending value: the version, opcode, length, flags or field value.
	Value uint64
}

// Error describes what was wrong, with the frame's opcode and request id when known.
func (e *ProtocolError) Error() string {
	switch e.Kind {
	case BadMagic:
		return "rush: bad response: bad magic (a frame starts with bytes 52 53)"
	case BadVersion:
		return fmt.Sprintf("rush: bad response: unsupported protocol version %d", e.Value)
	case UnknownOpcode:
		return fmt.Sprintf("rush: bad response: unknown opcode %#04x", e.Value)
	case BadLength:
		return fmt.Sprintf("rush: bad response: length %d for %v", e.Value, e.Opcode)
	case Truncated:
		return fmt.Sprintf("rush: bad response: the connection closed %d bytes into a frame", e.Offset)
	case FlagsNotZero:
		return fmt.Sprintf("rush: bad response to %v request %d: header flags %#06x", e.Opcode, e.RequestID, e.Value)
	case ReservedNotZero:
		return fmt.Sprintf("rush: bad response to %v request %d: reserved byte at offset %d is %#04x",
			e.Opcode, e.RequestID, e.Offset, e.Value)
	case InvalidField:
		return fmt.Sprintf("rush: bad response to %v request %d: invalid %s %d", e.Opcode, e.RequestID, e.Field, e.Value)
	case UnexpectedResponse:
		return fmt.Sprintf("rush: bad response: %v for request id %d, which is not in flight", e.Opcode, e.RequestID)
	case OpcodeMismatch:
		return fmt.Sprintf("rush: bad response to request %d: opcode %v, the request's is %v",
			e.RequestID, e.Opcode, Opcode(e.Value))
	}
	return "rush: bad response: " + e.Kind.String()
}

// Fatal reports whether the error broke the stream's framing (the connection is closed).
func (e *ProtocolError) Fatal() bool {
	switch e.Kind {
	case BadMagic, BadVersion, UnknownOpcode, BadLength, Truncated, UnexpectedResponse:
		return true
	}
	return false
}

// ConnectionError reports that the server could not be reached, or that the connection
// broke and reconnecting failed Config.ReconnectAttempts times in a row. Requests that were
// in flight have unknown outcomes: retry them with the same keys (or read them back with
// QueryReservation by key).
type ConnectionError struct {
	Addr string
	// Attempts is the number of connection attempts made.
	Attempts int
	// Err is the last cause (a dial error, an I/O error, or a *ProtocolError).
	Err error
}

// Error names the address, the attempts and the last cause.
func (e *ConnectionError) Error() string {
	return fmt.Sprintf("rush: connection to %s lost after %d attempts: %v", e.Addr, e.Attempts, e.Err)
}

// Unwrap returns the last cause.
func (e *ConnectionError) Unwrap() error { return e.Err }
