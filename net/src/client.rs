//! The Rush client library: a blocking [`Client`] (one request at a time), a [`Pipeline`]
//! (many requests in flight on one connection, responses matched by request id, automatic
//! reconnect that re-sends what was in flight), and a [`ShardAwareClient`] that learns the
//! server's shard layout and sends each request straight to the shard that owns it.
//!
//! ```no_run
//! use rush_engine::{Request, Reserve, ResultCode};
//! use rush_net::client::Client;
//!
//! let mut client = Client::connect("127.0.0.1:7070").unwrap();
//! let reply = client
//!     .call(&Request::Reserve(Reserve {
//!         account: 42, sku: 1, quantity: 1, key: 1, flags: 0, hold_ms: 0, wait_ms: 0,
//!     }))
//!     .unwrap();
//! assert_eq!(reply.result, ResultCode::Ok);
//! ```
//!
//! **Exactly once across reconnects.** Every state-changing request carries a request key.
//! When a connection breaks with requests in flight, [`Pipeline`] reconnects and sends them
//! again, unchanged (same keys): a request that had taken effect is answered DUPLICATE with
//! the original outcome in `Reply::original` and body, one that had not takes effect now.
//! A RESERVE that was parked in a waitlist is answered DUPLICATE with original WAITING: its
//! final outcome is read with QUERY_RESERVATION by its key.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rush_engine::quota::route;
use rush_engine::{Reply, Request};

use crate::protocol::{
    decode_response, encode_request, ping_topology, DecodeError, Opcode, Topology, HEADER_SIZE,
};

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The server sent bytes that are not a valid response.
    Decode(DecodeError),
    /// No response within the timeout (the request may still take effect: retry it with
    /// the same key).
    Timeout,
    /// The server closed the connection.
    Closed,
    /// A response for a request id that is not in flight.
    UnexpectedResponse(u64),
    /// The address did not resolve, or the server's layout is unusable.
    Address(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(error) => write!(formatter, "i/o error: {error}"),
            ClientError::Decode(error) => write!(formatter, "bad response: {error}"),
            ClientError::Timeout => formatter.write_str("timed out waiting for a response"),
            ClientError::Closed => formatter.write_str("the server closed the connection"),
            ClientError::UnexpectedResponse(id) => {
                write!(formatter, "response for request id {id}, which is not in flight")
            }
            ClientError::Address(reason) => formatter.write_str(reason),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> ClientError {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            io::ErrorKind::UnexpectedEof => ClientError::Closed,
            _ => ClientError::Io(error),
        }
    }
}

/// Client settings.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    /// How long `recv` / `call` wait for a response.
    pub timeout: Duration,
    /// How many times a [`Pipeline`] reconnects after a broken connection before giving up
    /// (0: never).
    pub reconnect_attempts: u32,
    /// Pause between reconnect attempts (doubled each time).
    pub reconnect_backoff: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(5),
            reconnect_attempts: 5,
            reconnect_backoff: Duration::from_millis(20),
        }
    }
}

fn resolve(address: impl ToSocketAddrs) -> Result<SocketAddr, ClientError> {
    address
        .to_socket_addrs()
        .map_err(|error| ClientError::Address(format!("cannot resolve address: {error}")))?
        .next()
        .ok_or_else(|| ClientError::Address("the address resolved to nothing".into()))
}

fn open(address: SocketAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
    let stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// A response as the pipeline returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub request_id: u64,
    /// The request it answers (as sent).
    pub request: Request,
    pub reply: Reply,
}

/// One connection with many requests in flight. Responses may arrive in any order; each is
/// matched to its request by id. Not thread-safe: one owner.
#[derive(Debug)]
pub struct Pipeline {
    address: SocketAddr,
    config: ClientConfig,
    stream: TcpStream,
    next_id: u64,
    in_flight: HashMap<u64, Request>,
    /// Encoded requests not yet written.
    outbound: Vec<u8>,
    inbound: Vec<u8>,
    inbound_start: usize,
    reconnects: u64,
    /// The topology from the last PING response.
    topology: Topology,
}

impl Pipeline {
    pub fn connect(address: impl ToSocketAddrs) -> Result<Pipeline, ClientError> {
        Pipeline::with_config(address, ClientConfig::default())
    }

    pub fn with_config(
        address: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Pipeline, ClientError> {
        let address = resolve(address)?;
        let stream = open(address, config.timeout)?;
        Ok(Pipeline {
            address,
            config,
            stream,
            next_id: 1,
            in_flight: HashMap::new(),
            outbound: Vec::with_capacity(64 * 1024),
            inbound: Vec::with_capacity(64 * 1024),
            inbound_start: 0,
            reconnects: 0,
            topology: Topology::default(),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Requests sent (or buffered) and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// How many times the connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Buffers `request` and returns its request id. Call [`Pipeline::flush`] (or `recv`,
    /// which flushes) to send.
    pub fn send(&mut self, request: &Request) -> u64 {
        let request_id = self.next_id;
        self.next_id += 1;
        self.send_with_id(request_id, request);
        request_id
    }

    /// Buffers `request` with a caller-chosen id (must not be in flight already).
    pub fn send_with_id(&mut self, request_id: u64, request: &Request) {
        debug_assert!(!self.in_flight.contains_key(&request_id));
        encode_request(request_id, request, &mut self.outbound);
        self.in_flight.insert(request_id, *request);
    }

    /// Writes every buffered request. On a broken connection, reconnects and re-sends every
    /// request in flight.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        loop {
            match self.stream.write_all(&self.outbound) {
                Ok(()) => {
                    self.outbound.clear();
                    return Ok(());
                }
                Err(error) if broken(&error) => self.reconnect()?,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Waits for the next response (any request in flight).
    pub fn recv(&mut self) -> Result<Response, ClientError> {
        if !self.outbound.is_empty() {
            self.flush()?;
        }
        let deadline = Instant::now() + self.config.timeout;
        loop {
            if let Some(response) = self.take_buffered()? {
                return Ok(response);
            }
            if self.in_flight.is_empty() {
                return Err(ClientError::UnexpectedResponse(0));
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout);
            }
            if self.inbound_start > 0 {
                self.inbound.drain(..self.inbound_start);
                self.inbound_start = 0;
            }
            let length = self.inbound.len();
            self.inbound.resize(length + 64 * 1024, 0);
            let read = self.stream.read(&mut self.inbound[length..]);
            match read {
                Ok(0) => {
                    self.inbound.truncate(length);
                    self.reconnect()?;
                }
                Ok(count) => self.inbound.truncate(length + count),
                Err(error) if broken(&error) => {
                    self.inbound.truncate(length);
                    self.reconnect()?;
                }
                // A signal interrupted the read (regression: seen in CI); nothing was lost.
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                    self.inbound.truncate(length);
                }
                Err(error) => {
                    self.inbound.truncate(length);
                    return Err(error.into());
                }
            }
        }
    }

    /// Sends `request` and waits for its own response. Responses to other requests that
    /// arrive meanwhile are discarded: use it on an otherwise idle pipeline.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let request_id = self.send(request);
        self.wait_for(request_id)
    }

    fn wait_for(&mut self, request_id: u64) -> Result<Reply, ClientError> {
        loop {
            let response = self.recv()?;
            if response.request_id == request_id {
                return Ok(response.reply);
            }
        }
    }

    /// PING, returning the server's topology.
    pub fn ping(&mut self) -> Result<Topology, ClientError> {
        self.call(&Request::Ping)?;
        Ok(self.topology)
    }

    fn take_buffered(&mut self) -> Result<Option<Response>, ClientError> {
        let bytes = &self.inbound[self.inbound_start..];
        if bytes.len() < HEADER_SIZE {
            return Ok(None);
        }
        match decode_response(bytes) {
            Ok((frame, consumed)) => {
                if frame.opcode == Opcode::Ping {
                    self.topology = ping_topology(bytes).unwrap_or_default();
                }
                self.inbound_start += consumed;
                let request = self
                    .in_flight
                    .remove(&frame.request_id)
                    .ok_or(ClientError::UnexpectedResponse(frame.request_id))?;
                let account = account_of(&request);
                Ok(Some(Response {
                    request_id: frame.request_id,
                    request,
                    reply: frame.with_account(account).reply,
                }))
            }
            Err(error) if error.is_incomplete() => Ok(None),
            Err(error) => Err(ClientError::Decode(error)),
        }
    }

    /// Re-establishes the connection and re-sends every request in flight, unchanged.
    pub fn reconnect(&mut self) -> Result<(), ClientError> {
        let mut backoff = self.config.reconnect_backoff;
        let mut attempt = 0;
        loop {
            if attempt >= self.config.reconnect_attempts {
                return Err(ClientError::Closed);
            }
            attempt += 1;
            std::thread::sleep(backoff);
            backoff *= 2;
            let Ok(stream) = open(self.address, self.config.timeout) else { continue };
            self.stream = stream;
            self.reconnects += 1;
            self.inbound.clear();
            self.inbound_start = 0;
            self.outbound.clear();
            let mut ids: Vec<u64> = self.in_flight.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                encode_request(id, &self.in_flight[&id], &mut self.outbound);
            }
            match self.stream.write_all(&self.outbound) {
                Ok(()) => {
                    self.outbound.clear();
                    return Ok(());
                }
                Err(error) if broken(&error) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }
}

fn broken(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// The account a request is about (0 for SKU-level requests), to complete reply bodies.
fn account_of(request: &Request) -> u64 {
    match *request {
        Request::Reserve(reserve) => reserve.account,
        Request::Confirm { account, .. }
        | Request::Cancel { account, .. }
        | Request::QueryAccount { account }
        | Request::QueryReservation { account, .. }
        | Request::Deposit { account, .. }
        | Request::Withdraw { account, .. } => account,
        _ => 0,
    }
}

/// A blocking client: one connection, one request at a time.
#[derive(Debug)]
pub struct Client {
    pipeline: Pipeline,
}

impl Client {
    pub fn connect(address: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Ok(Client { pipeline: Pipeline::connect(address)? })
    }

    pub fn with_config(
        address: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        Ok(Client { pipeline: Pipeline::with_config(address, config)? })
    }

    /// Sends `request` and waits for its reply.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        self.pipeline.call(request)
    }

    /// PING: the round trip, and the server's shard layout.
    pub fn ping(&mut self) -> Result<Topology, ClientError> {
        self.pipeline.ping()
    }
}

/// Routes each request to the shard that owns it, over one connection per shard (the
/// server's per-shard ports, learned with a PING). Requests go out pipelined; `recv`
/// returns responses from any shard.
#[derive(Debug)]
pub struct ShardAwareClient {
    topology: Topology,
    shards: Vec<Pipeline>,
    /// Request ids are unique across the shards' pipelines.
    next_id: u64,
    /// Rotates reads across the shards.
    next_shard: usize,
}

impl ShardAwareClient {
    /// Connects to `address`, asks for the topology, and opens one connection per shard.
    /// Fails when the server has no per-shard ports.
    pub fn connect(
        address: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<ShardAwareClient, ClientError> {
        let address = resolve(address)?;
        let mut first = Pipeline::with_config(address, config)?;
        let topology = first.ping()?;
        if topology.shard_count == 0 || topology.shard_port_base == 0 {
            return Err(ClientError::Address(
                "the server does not offer per-shard ports (start it with shard ports on)".into(),
            ));
        }
        let mut shards = Vec::new();
        for shard in 0..topology.shard_count {
            let port = topology
                .shard_port_base
                .checked_add(shard)
                .ok_or_else(|| ClientError::Address("per-shard port out of range".into()))?;
            shards.push(Pipeline::with_config(SocketAddr::new(address.ip(), port), config)?);
        }
        Ok(ShardAwareClient { topology, shards, next_id: 1, next_shard: 0 })
    }

    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// The shard `request` goes to.
    pub fn shard_for(&self, request: &Request) -> usize {
        route(request, u32::from(self.topology.shard_count)).unwrap_or(0) as usize
    }

    pub fn in_flight(&self) -> usize {
        self.shards.iter().map(Pipeline::in_flight).sum()
    }

    /// Buffers `request` on its shard's connection; returns its request id.
    pub fn send(&mut self, request: &Request) -> u64 {
        let request_id = self.next_id;
        self.next_id += 1;
        let shard = self.shard_for(request);
        self.shards[shard].send_with_id(request_id, request);
        request_id
    }

    pub fn flush(&mut self) -> Result<(), ClientError> {
        for pipeline in &mut self.shards {
            pipeline.flush()?;
        }
        Ok(())
    }

    /// The next response from whichever shard has one.
    pub fn recv(&mut self) -> Result<Response, ClientError> {
        self.flush()?;
        let count = self.shards.len();
        for offset in 0..count {
            let shard = (self.next_shard + offset) % count;
            if let Some(response) = self.shards[shard].take_buffered()? {
                self.next_shard = shard + 1;
                return Ok(response);
            }
        }
        // Nothing buffered: block on a shard that has requests in flight.
        for offset in 0..count {
            let shard = (self.next_shard + offset) % count;
            if self.shards[shard].in_flight() > 0 {
                self.next_shard = shard + 1;
                return self.shards[shard].recv();
            }
        }
        Err(ClientError::UnexpectedResponse(0))
    }

    /// Sends `request` to its shard and waits for its reply (on an otherwise idle client).
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let request_id = self.next_id;
        self.next_id += 1;
        let shard = self.shard_for(request);
        self.shards[shard].send_with_id(request_id, request);
        self.shards[shard].wait_for(request_id)
    }
}

/// The opcode a request is sent with (re-exported for tools).
pub fn opcode_of(request: &Request) -> Opcode {
    Opcode::for_request(request)
}
