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
                return Err(ConfigError { field, reason: "must be greater than zero" });
            }
        }
        // Table sizes: reservation slots and wheel sentinels share a u32 index space, and
        // the hash tables round up to a power of two.
        let table_limit: u32 = 1 << 28;
        for (field, value) in [
            ("sku_max", self.sku_max),
            ("account_max", self.account_max),
            ("reservation_max", self.reservation_max),
            ("request_key_max", self.request_key_max),
            ("limit_entry_max", self.limit_entry_max),
        ] {
            if value > table_limit {
                return Err(ConfigError { field, reason: "must be at most 2^28" });
            }
        }
        if self.waitlist_max > self.reservation_max {
            return Err(ConfigError {
                field: "waitlist_max",
                reason: "must be at most reservation_max (a waiter occupies a reservation slot)",
            });
        }
        if self.hold_ms_default > self.hold_ms_max {
            return Err(ConfigError {
                field: "hold_ms_default",
                reason: "must be at most hold_ms_max",
            });
        }
        let live_ms_max = u64::from(self.hold_ms_max) + u64::from(self.wait_ms_max);
        if live_ms_max >= DEADLINE_AHEAD_MS_MAX {
            return Err(ConfigError {
                field: "hold_ms_max",
                reason: "hold_ms_max + wait_ms_max must be below 2^36 ms",
            });
        }
        if self.request_key_retention_ms < live_ms_max {
            return Err(ConfigError {
                field: "request_key_retention_ms",
                reason: "must be at least hold_ms_max + wait_ms_max",
            });
        }
        Ok(())
    }
}

/// An invalid [`Config`] field and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "invalid engine config: {} {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}
