package rush

// Mix64 is the 64-bit finalizer of MurmurHash3, the hash behind the shard formulas of
// PROTOCOL.md section 1.2 (wrapping multiplications, as in the server).
func Mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// HomeShard is the shard that owns an account (its wallet, keys and reservations) among
// shardCount shards: mix64(account ^ 0x6163636f756e7400) % n. It returns 0 when shardCount
// is 0 (a server that does not report its shards).
func HomeShard(account uint64, shardCount uint16) uint16 {
	if shardCount == 0 {
		return 0
	}
	return uint16(Mix64(account^0x6163636f756e7400) % uint64(shardCount))
}

// CoordinatorShard is the shard that holds a SKU's pool and waitlist among shardCount shards:
// mix64(sku ^ 0x00000000736b7500) % n. It returns 0 when shardCount is 0.
func CoordinatorShard(sku uint64, shardCount uint16) uint16 {
	if shardCount == 0 {
		return 0
	}
	return uint16(Mix64(sku^0x00000000736b7500) % uint64(shardCount))
}

// ShardFor returns the shard that applies req among shardCount shards: the account's home
// shard for everything about an account (including DEPOSIT and WITHDRAW), the SKU's
// coordinator for the admin SKU operations (PUT_SKU, ADJUST_STOCK, PAUSE, RESUME). For PING
// and QUERY_SKU, which any shard answers, ok is false.
func ShardFor(req Request, shardCount uint16) (shard uint16, ok bool) {
	spec := req.Opcode().spec()
	if spec == nil || spec.routeField < 0 {
		return 0, false
	}
	var values [maxFields]uint64
	req.wire(&values)
	switch spec.route {
	case routeHome:
		return HomeShard(values[spec.routeField], shardCount), true
	case routeCoordinator:
		return CoordinatorShard(values[spec.routeField], shardCount), true
	}
	return 0, false
}
