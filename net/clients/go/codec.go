package rush

import "encoding/binary"

// AppendRequest appends the request frame of req with the given request id to dst and
// returns the extended slice. It is the encoder the clients use; it is exported for callers
// that manage their own connections (and for tests that play the server).
func AppendRequest(dst []byte, requestID uint64, req Request) []byte {
	var values [maxFields]uint64
	req.wire(&values)
	return appendFrame(dst, req.Opcode(), requestID, &values)
}

// appendFrame encodes a request from its field values (Request.wire's order). The clients
// keep values in their own reused storage: passed to an interface method, a local array
// would escape to the heap on every request.
func appendFrame(dst []byte, op Opcode, requestID uint64, values *[maxFields]uint64) []byte {
	l := op.spec().request
	start := len(dst)
	dst = append(dst, make([]byte, l.size)...)
	frame := dst[start:]
	putHeader(frame, op, l.size, requestID)
	for i, f := range l.fields {
		putUint(frame[f.off:f.off+f.width], values[i])
	}
	return dst
}

func putHeader(frame []byte, op Opcode, size int, requestID uint64) {
	binary.LittleEndian.PutUint16(frame[0:], Magic)
	frame[2] = Version
	frame[3] = byte(op)
	binary.LittleEndian.PutUint16(frame[4:], uint16(size))
	binary.LittleEndian.PutUint16(frame[6:], 0) // flags: reserved
	binary.LittleEndian.PutUint64(frame[8:], requestID)
}

func putUint(b []byte, v uint64) {
	switch len(b) {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	case 8:
		binary.LittleEndian.PutUint64(b, v)
	}
}

func getUint(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	case 8:
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// DecodeResponse decodes the response frame at the start of b, validated as PROTOCOL.md
// section 6 asks of a client: magic, version, opcode, length, header flags, every reserved
// byte, and the enumerated fields (result codes, reservation state, paused flag).
//
// It returns the reply and the frame's length. When b holds only a valid prefix of a frame
// it returns n == 0 and a nil error: read more bytes. A malformed frame gives a
// *ProtocolError; fatal errors (ProtocolError.Fatal) are reported as soon as the bytes that
// show them are in b, and for the other kinds n is the frame's length, so a reader can skip
// the frame. It never panics, whatever b holds.
//
// Reservation.Account and Wallet.Account are not on the wire and stay 0; the clients fill
// them in from the request.
func DecodeResponse(b []byte) (reply Reply, n int, err error) {
	n, err = decodeResponse(b, &reply)
	return reply, n, err
}

// decodeResponse is DecodeResponse into caller-owned storage (the body tables write through
// a pointer, so a Reply on the stack would escape on every response). It resets *reply.
func decodeResponse(b []byte, reply *Reply) (n int, err error) {
	*reply = Reply{}
	// The header, checked byte by byte as it arrives: a wrong magic is reported from the
	// first byte, without waiting for a frame that may never come.
	magic := [2]byte{byte(Magic & 0xff), byte(Magic >> 8)}
	for i := 0; i < 2; i++ {
		if len(b) <= i {
			return 0, nil
		}
		if b[i] != magic[i] {
			return 0, &ProtocolError{Kind: BadMagic}
		}
	}
	if len(b) < 3 {
		return 0, nil
	}
	if b[2] != Version {
		return 0, &ProtocolError{Kind: BadVersion, Value: uint64(b[2])}
	}
	if len(b) < 4 {
		return 0, nil
	}
	op := Opcode(b[3])
	spec := op.spec()
	if spec == nil {
		return 0, &ProtocolError{Kind: UnknownOpcode, Value: uint64(b[3])}
	}
	if len(b) < 6 {
		return 0, nil
	}
	length := int(binary.LittleEndian.Uint16(b[4:]))
	if length != spec.response.size {
		return 0, &ProtocolError{Kind: BadLength, Opcode: op, Value: uint64(length)}
	}
	if len(b) < length {
		return 0, nil
	}
	frame := b[:length]
	reply.Opcode = op
	reply.RequestID = binary.LittleEndian.Uint64(frame[8:])
	if flags := binary.LittleEndian.Uint16(frame[6:]); flags != 0 {
		return length, &ProtocolError{Kind: FlagsNotZero, Opcode: op, RequestID: reply.RequestID,
			Offset: 6, Value: uint64(flags)}
	}
	l := spec.response
	// A body that depends on the result code (none in version 1) takes precedence. The
	// result code is read here unvalidated only to pick the table; the table validates it.
	if result := binary.LittleEndian.Uint16(frame[16:]); int(result) < len(resultLayouts) {
		if special := resultLayouts[result]; special != nil {
			l = special
		}
	}
	if err := decodeBody(frame, l, reply); err != nil {
		return length, err
	}
	return length, nil
}

func decodeBody(frame []byte, l *layout, reply *Reply) error {
	for _, s := range l.reserved {
		for i := s.from; i < s.to; i++ {
			if frame[i] != 0 {
				return &ProtocolError{Kind: ReservedNotZero, Opcode: reply.Opcode, RequestID: reply.RequestID,
					Offset: i, Value: uint64(frame[i])}
			}
		}
	}
	for _, f := range l.fields {
		v := getUint(frame[f.off : f.off+f.width])
		valid := true
		switch f.kind {
		case kindResult:
			valid = ResultCode(v).Valid()
		case kindState:
			valid = ReservationState(v).Valid()
		case kindBool, kindTarget:
			valid = v <= 1
		}
		if !valid {
			return &ProtocolError{Kind: InvalidField, Opcode: reply.Opcode, RequestID: reply.RequestID,
				Field: f.name, Offset: f.off, Value: v}
		}
		if f.set != nil {
			f.set(reply, v)
		}
	}
	return nil
}

// AppendResponse appends the response frame of reply (its Opcode, RequestID, codes and the
// body of its opcode's layout) to dst and returns the extended slice. Clients do not need
// it; it is exported for tests that play the server, such as a fake Rush in a gateway's
// test suite. An invalid reply.Opcode appends nothing.
func AppendResponse(dst []byte, reply Reply) []byte {
	spec := reply.Opcode.spec()
	if spec == nil {
		return dst
	}
	l := spec.response
	if int(reply.Result) < len(resultLayouts) && resultLayouts[reply.Result] != nil {
		l = resultLayouts[reply.Result]
	}
	start := len(dst)
	dst = append(dst, make([]byte, l.size)...)
	frame := dst[start:]
	putHeader(frame, reply.Opcode, l.size, reply.RequestID)
	for _, f := range l.fields {
		putUint(frame[f.off:f.off+f.width], f.get(&reply))
	}
	return dst
}
