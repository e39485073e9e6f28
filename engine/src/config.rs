//! Engine configuration: every capacity and time bound, validated once at start.

use core::fmt;

/// The wheel covers deadlines up to 2^36 ms (about 795 days) ahead; see `wheel.rs`.
pub(crate) const DEADLINE_AHEAD_MS_MAX: u64 = 1 << 36;

/// Capacities and time bounds of one engine (one shard). Every table is allocated at
/// [`crate::Engine::new`] with these sizes and never grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// SKUs this shard knows.
    pub sku_max: u32,
    /// Accounts with a wallet.
    pub account_max: u32,
    /// Reservation slots: live ones (waiting, held) plus finished ones kept for queries.
    /// Finished reservations are retired oldest-first when a slot is needed; when every
    /// slot is live, RESERVE answers OVERLOADED.
    pub reservation_max: u32,
    /// Waiters one SKU's FIFO waitlist may hold; beyond it RESERVE answers OVERLOADED.
    pub waitlist_max: u32,
    /// Retained request keys (and cancel-before-reserve tombstones).
    pub request_key_max: u32,
    /// A key is kept at least this long after the request that recorded it. When the key
    /// table is full of younger keys, state-changing requests answer OVERLOADED rather than
    /// forget a key early. Must be at least `hold_ms_max + wait_ms_max`, so the key of a
    /// live reservation is never forgotten.
    pub request_key_retention_ms: u64,
    /// Per (account, SKU) purchase counters of SKUs with a per-user limit.
    pub limit_entry_max: u32,
    /// Largest quantity of one RESERVE.
    pub quantity_max: u32,
    /// Hold time when neither the RESERVE nor the SKU gives one.
    pub hold_ms_default: u32,
    /// Largest hold time a RESERVE or a SKU may ask for.
    pub hold_ms_max: u32,
    /// Largest `wait_ms` of a RESERVE.
    pub wait_ms_max: u32,
}

impl Default for Config {
    /// A server-sized shard: about 200 MiB of tables.
    fn default() -> Self {
        Config {
            sku_max: 100_000,
            account_max: 1_000_000,
            reservation_max: 1_000_000,
            waitlist_max: 100_000,
            request_key_max: 1_000_000,
            request_key_retention_ms: 24 * 3600 * 1000,
            limit_entry_max: 1_000_000,
            quantity_max: 1_000,
            hold_ms_default: 15 * 60 * 1000,
            hold_ms_max: 6 * 3600 * 1000,
            wait_ms_max: 3600 * 1000,
        }
    }
}

impl Config {
    /// A small configuration for tests and examples (a few MiB).
    pub fn small() -> Config {
        Config {
            sku_max: 64,
            account_max: 1024,
            reservation_max: 4096,
            waitlist_max: 1024,
            request_key_max: 8192,
            request_key_retention_ms: 24 * 3600 * 1000,
            limit_entry_max: 4096,
            quantity_max: 1_000,
            hold_ms_default: 60_000,
            hold_ms_max: 3600 * 1000,
            wait_ms_max: 600 * 1000,
        }
    }

    /// One shard's share when `self` gives a whole server's capacities, divided as the data
    /// is (docs/ARCHITECTURE.md, "Memory"):
    /// - wallets, reservations, request keys and per-user counters live on their account's
    ///   home shard, and accounts hash evenly over the shards: each shard gets
    ///   `ceil(total / shards)` plus a headroom of three standard deviations of that share
    ///   (`3 × sqrt(share)`, the spread of a binomial count), so a server filled to its total
    ///   with random accounts does not find one shard full early (one shard: no headroom);
    /// - every shard knows every SKU: `sku_max` is not divided;
    /// - a SKU's waitlist lives on its coordinator, each waiter in one of its reservation
    ///   slots: `waitlist_max` is at most the shard's `reservation_max`;
    /// - time bounds and `quantity_max` bound one request: unchanged.
    ///
    /// A share is never above the total, so a valid server configuration gives a valid shard
    /// configuration.
    pub fn per_shard(&self, shard_count: u32) -> Config {
        assert!(shard_count >= 1, "a server has at least one shard");
        let share = |total: u32| -> u32 {
            if shard_count == 1 {
                return total;
            }
            let even = total.div_ceil(shard_count);
            even.saturating_add(3 * even.isqrt() + 1).min(total)
        };
        let reservation_max = share(self.reservation_max);
        let shard = Config {
            account_max: share(self.account_max),
            reservation_max,
            waitlist_max: self.waitlist_max.min(reservation_max),
            request_key_max: share(self.request_key_max),
            limit_entry_max: share(self.limit_entry_max),
            ..*self
        };
        debug_assert!(shard.reservation_max <= self.reservation_max);
        debug_assert!(shard.account_max <= self.account_max);
        shard
    }

    /// Checks every bound; [`crate::Engine::new`] refuses an invalid configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 10] = [
            ("sku_max", u64::from(self.sku_max)),
            ("account_max", u64::from(self.account_max)),
            ("reservation_max", u64::from(self.reservation_max)),
            ("waitlist_max", u64::from(self.waitlist_max)),
            ("request_key_max", u64::from(self.request_key_max)),
            ("limit_entry_max", u64::from(self.limit_entry_max)),
            ("quantity_max", u64::from(self.quantity_max)),
            ("hold_ms_default", u64::from(self.hold_ms_default)),
            ("hold_ms_max", u64::from(self.hold_ms_max)),
            ("wait_ms_max", u64::from(self.wait_ms_max)),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError { field, value, rule: ConfigRule::NotZero });
            }
        }
        // Table sizes: reservation slots and wheel sentinels share a u32 index space, and
        // the hash tables round up to a power of two.
        for (field, value) in [
            ("sku_max", self.sku_max),
            ("account_max", self.account_max),
            ("reservation_max", self.reservation_max),
            ("request_key_max", self.request_key_max),
            ("limit_entry_max", self.limit_entry_max),
        ] {
            if value > TABLE_LEN_MAX {
                let rule = ConfigRule::AtMost(u64::from(TABLE_LEN_MAX));
                return Err(ConfigError { field, value: u64::from(value), rule });
            }
        }
        // A reservation id has 26 bits for its slot (`ReservationIdParts`), and a slot keeps
        // its quantity in 16 bits.
        let narrow: [(&'static str, u64, u64); 2] = [
            ("reservation_max", self.reservation_max.into(), RESERVATION_MAX_LIMIT.into()),
            ("quantity_max", self.quantity_max.into(), u16::MAX.into()),
        ];
        for (field, value, max) in narrow {
            if value > max {
                return Err(ConfigError { field, value, rule: ConfigRule::AtMost(max) });
            }
        }
        if self.waitlist_max > self.reservation_max {
            return Err(ConfigError {
                field: "waitlist_max",
                value: u64::from(self.waitlist_max),
                rule: ConfigRule::AtMostField {
                    other: "reservation_max",
                    other_value: u64::from(self.reservation_max),
                    why: "a waiter occupies a reservation slot",
                },
            });
        }
        if self.hold_ms_default > self.hold_ms_max {
            return Err(ConfigError {
                field: "hold_ms_default",
                value: u64::from(self.hold_ms_default),
                rule: ConfigRule::AtMostField {
                    other: "hold_ms_max",
                    other_value: u64::from(self.hold_ms_max),
                    why: "the default hold is a hold",
                },
            });
        }
        let live_ms_max = u64::from(self.hold_ms_max) + u64::from(self.wait_ms_max);
        if live_ms_max >= DEADLINE_AHEAD_MS_MAX {
            return Err(ConfigError {
                field: "hold_ms_max + wait_ms_max",
                value: live_ms_max,
                rule: ConfigRule::Below(DEADLINE_AHEAD_MS_MAX),
            });
        }
        if self.request_key_retention_ms < live_ms_max {
            return Err(ConfigError {
                field: "request_key_retention_ms",
                value: self.request_key_retention_ms,
                rule: ConfigRule::AtLeastField {
                    other: "hold_ms_max + wait_ms_max",
                    other_value: live_ms_max,
                    why: "the key of a live reservation is never forgotten",
                },
            });
        }
        Ok(())
    }
}

/// Largest capacity of any engine table (slots and timer sentinels share a u32 index space,
/// and hash tables round up to a power of two).
pub const TABLE_LEN_MAX: u32 = 1 << 28;

/// Largest `reservation_max`: a reservation id has 26 bits for the slot index.
pub const RESERVATION_MAX_LIMIT: u32 = 1 << crate::ReservationIdParts::SLOT_BITS;

/// The rule a configuration value broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigRule {
    NotZero,
    AtMost(u64),
    Below(u64),
    /// `min..=max`.
    Between(u64, u64),
    AtMostField {
        other: &'static str,
        other_value: u64,
        why: &'static str,
    },
    AtLeastField {
        other: &'static str,
        other_value: u64,
        why: &'static str,
    },
}

/// An invalid configuration value: the field, the value given, and the rule it broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub value: u64,
    pub rule: ConfigRule,
}

impl ConfigError {
    /// `value` of `field` must be in `min..=max`.
    pub fn between(field: &'static str, value: u64, min: u64, max: u64) -> ConfigError {
        ConfigError { field, value, rule: ConfigRule::Between(min, max) }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ConfigError { field, value, rule } = *self;
        write!(formatter, "{field} = {value}: ")?;
        match rule {
            ConfigRule::NotZero => write!(formatter, "must be greater than zero"),
            ConfigRule::AtMost(max) => write!(formatter, "must be at most {max}"),
            ConfigRule::Below(limit) => write!(formatter, "must be below {limit}"),
            ConfigRule::Between(min, max) => write!(formatter, "must be {min}..={max}"),
            ConfigRule::AtMostField { other, other_value, why } => {
                write!(formatter, "must be at most {other} ({other_value}): {why}")
            }
            ConfigRule::AtLeastField { other, other_value, why } => {
                write!(formatter, "must be at least {other} ({other_value}): {why}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}
