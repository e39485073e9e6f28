//! `--protocol resp`: the seckill-hot workload against Redis, for comparison.
//!
//! Each RESERVE becomes `EVALSHA <sha> 3 stock:<sku> limit:<sku>:<account>
//! key:<account>:<key> <quantity> <limit>` running [`RESERVE_SCRIPT`], loaded once with
//! `SCRIPT LOAD`; each PING is `PING`. RESP2 is spoken by hand: commands are arrays of bulk
//! strings, pipelined on the connection, and Redis answers in order (no request ids), so the
//! driver matches replies to requests first-in first-out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use rush_engine::{Reply, ReplyBody, Request, ResultCode};

/// Reserve atomically (a Lua script runs alone on the Redis server): the idempotency key
/// first (a key that took effect returns its stored outcome: DUPLICATE), then the per-user
/// limit, then the stock check-and-decrement. Rejections do not record the key, exactly as
/// in Rush (a retry is evaluated afresh). The return value is a Rush result code: 0 OK,
/// 3 SOLD_OUT, 4 LIMIT_EXCEEDED, or 100 + the original code for DUPLICATE. KEY_REUSED is not
/// modelled (the bench's retries are identical).
pub const RESERVE_SCRIPT: &str = r#"
-- KEYS[1] stock:<sku>  KEYS[2] limit:<sku>:<account>  KEYS[3] key:<account>:<key>
-- ARGV[1] quantity  ARGV[2] per-user limit (0: none)
local done = redis.call('GET', KEYS[3])
if done then
  return 100 + tonumber(done)
end
local quantity = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') + quantity > limit then
  return 4
end
if tonumber(redis.call('GET', KEYS[1]) or '0') < quantity then
  return 3
end
redis.call('DECRBY', KEYS[1], quantity)
if limit > 0 then
  redis.call('INCRBY', KEYS[2], quantity)
end
redis.call('SET', KEYS[3], '0')
return 0
"#;

/// Offset of DUPLICATE replies' original code in the script's return value.
const DUPLICATE_BASE: i64 = 100;

/// What the driver needs to encode a RESERVE: the script's digest and the SKU's limit.
#[derive(Clone, Debug)]
pub struct Script {
    pub sha: String,
    pub per_user_limit: u32,
}

/// A RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

pub fn stock_key(sku: u64) -> String {
    format!("stock:{sku}")
}

/// Appends a command (an array of bulk strings).
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    // Writes to a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the command for `request` (RESERVE or PING; the bench validates that nothing else
/// is sent over RESP).
pub fn encode_request(script: &Script, request: &Request, out: &mut Vec<u8>) {
    match request {
        Request::Reserve(reserve) => {
            let stock = stock_key(reserve.sku);
            let limit = format!("limit:{}:{}", reserve.sku, reserve.account);
            let key = format!("key:{}:{}", reserve.account, reserve.key);
            let quantity = reserve.quantity.to_string();
            let per_user_limit = script.per_user_limit.to_string();
            encode_command(
                &[
                    b"EVALSHA",
                    script.sha.as_bytes(),
                    b"3",
                    stock.as_bytes(),
                    limit.as_bytes(),
                    key.as_bytes(),
                    quantity.as_bytes(),
                    per_user_limit.as_bytes(),
                ],
                out,
            );
        }
        _ => encode_command(&[b"PING"], out),
    }
}

/// Parses the value at the start of `bytes`: `Ok(None)` while it is incomplete, else the
/// value and the bytes it used.
pub fn parse(bytes: &[u8]) -> Result<Option<(Value, usize)>, String> {
    let Some(line_end) = find_crlf(bytes) else { return Ok(None) };
    let Some((&kind, line)) = bytes[..line_end].split_first() else {
        return Err("empty RESP line".into());
    };
    let text = std::str::from_utf8(line).map_err(|_| "RESP line is not UTF-8".to_string())?;
    let after = line_end + 2;
    match kind {
        b'+' => Ok(Some((Value::Simple(text.to_string()), after))),
        b'-' => Ok(Some((Value::Error(text.to_string()), after))),
        b':' => {
            let value = text.parse().map_err(|_| format!("bad RESP integer {text:?}"))?;
            Ok(Some((Value::Integer(value), after)))
        }
        b'$' => {
            let length: i64 = text.parse().map_err(|_| format!("bad RESP length {text:?}"))?;
            if length < 0 {
                return Ok(Some((Value::Bulk(None), after)));
            }
            let end = after + length as usize;
            if bytes.len() < end + 2 {
                return Ok(None);
            }
            if &bytes[end..end + 2] != b"\r\n" {
                return Err("RESP bulk string not terminated by CRLF".into());
            }
            Ok(Some((Value::Bulk(Some(bytes[after..end].to_vec())), end + 2)))
        }
        b'*' => {
            let count: i64 = text.parse().map_err(|_| format!("bad RESP count {text:?}"))?;
            if count < 0 {
                return Ok(Some((Value::Array(None), after)));
            }
            let mut items = Vec::new();
            let mut used = after;
            for _ in 0..count {
                match parse(&bytes[used..])? {
                    Some((item, length)) => {
                        items.push(item);
                        used += length;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), used)))
        }
        other => Err(format!("unknown RESP type byte 0x{other:02x}")),
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

/// The reply a script result (or PONG) stands for.
pub fn to_reply(value: &Value) -> Result<Reply, String> {
    match value {
        Value::Simple(text) if text == "PONG" => Ok(Reply::code(ResultCode::Ok)),
        Value::Integer(code) if *code >= DUPLICATE_BASE => {
            let original = code_of(code - DUPLICATE_BASE)?;
            Ok(Reply { result: ResultCode::Duplicate, original, body: ReplyBody::None })
        }
        Value::Integer(code) => Ok(Reply::code(code_of(*code)?)),
        Value::Error(message) => Err(format!("Redis error: {message}")),
        other => Err(format!("unexpected Redis reply {other:?}")),
    }
}

fn code_of(code: i64) -> Result<ResultCode, String> {
    u16::try_from(code)
        .ok()
        .and_then(ResultCode::from_u16)
        .ok_or_else(|| format!("the script returned {code}, not a result code"))
}

/// A blocking RESP client for set-up and read-back.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    pub fn connect(address: SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
            .with_context(|| format!("cannot connect to Redis at {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, buffer: Vec::new() })
    }

    pub fn command(&mut self, args: &[&[u8]]) -> anyhow::Result<Value> {
        let mut out = Vec::new();
        encode_command(args, &mut out);
        self.stream.write_all(&out)?;
        loop {
            if let Some((value, used)) = parse(&self.buffer).map_err(anyhow::Error::msg)? {
                self.buffer.drain(..used);
                if let Value::Error(message) = &value {
                    bail!("Redis answered {:?}: {message}", String::from_utf8_lossy(args[0]));
                }
                return Ok(value);
            }
            let mut chunk = [0u8; 4096];
            let read = match self.stream.read(&mut chunk) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other.context("reading from Redis")?,
            };
            if read == 0 {
                bail!("Redis closed the connection");
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    pub fn load_script(&mut self) -> anyhow::Result<String> {
        match self.command(&[b"SCRIPT", b"LOAD", RESERVE_SCRIPT.as_bytes()])? {
            Value::Bulk(Some(sha)) => Ok(String::from_utf8_lossy(&sha).into_owned()),
            other => bail!("SCRIPT LOAD answered {other:?}"),
        }
    }

    /// The integer stored at `key` (`None` when the key does not exist).
    pub fn get_integer(&mut self, key: &str) -> anyhow::Result<Option<i64>> {
        match self.command(&[b"GET", key.as_bytes()])? {
            Value::Bulk(None) => Ok(None),
            Value::Bulk(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                Ok(Some(text.parse().with_context(|| format!("{key} holds {text:?}"))?))
            }
            other => bail!("GET {key} answered {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rush_engine::Reserve;

    #[test]
    fn encodes_evalsha_as_bulk_strings() {
        let script = Script { sha: "ab".repeat(20), per_user_limit: 1 };
        let mut out = Vec::new();
        let reserve =
            Reserve { account: 7, sku: 9, quantity: 1, key: 11, flags: 0, hold_ms: 0, wait_ms: 0 };
        encode_request(&script, &Request::Reserve(reserve), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("*8\r\n$7\r\nEVALSHA\r\n$40\r\n"), "{text}");
        let keys = "$1\r\n3\r\n$7\r\nstock:9\r\n$9\r\nlimit:9:7\r\n$8\r\nkey:7:11\r\n";
        assert!(text.ends_with(&format!("{keys}$1\r\n1\r\n$1\r\n1\r\n")), "{text}");
    }

    #[test]
    fn parses_replies_and_maps_codes() {
        assert_eq!(parse(b":3\r\n").unwrap(), Some((Value::Integer(3), 4)));
        assert_eq!(parse(b":3\r").unwrap(), None);
        assert_eq!(parse(b"$3\r\nab").unwrap(), None);
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Value::Bulk(None), 5)));
        assert_eq!(
            parse(b"*2\r\n+OK\r\n$2\r\nhi\r\n").unwrap(),
            Some((
                Value::Array(Some(vec![
                    Value::Simple("OK".into()),
                    Value::Bulk(Some(b"hi".to_vec()))
                ])),
                17
            ))
        );
        assert!(parse(b"?x\r\n").is_err());
        let duplicate = to_reply(&Value::Integer(100)).unwrap();
        assert_eq!((duplicate.result, duplicate.original), (ResultCode::Duplicate, ResultCode::Ok));
        assert_eq!(to_reply(&Value::Integer(3)).unwrap().result, ResultCode::SoldOut);
        assert_eq!(to_reply(&Value::Simple("PONG".into())).unwrap().result, ResultCode::Ok);
        assert!(to_reply(&Value::Error("NOSCRIPT".into())).is_err());
        assert!(to_reply(&Value::Integer(77)).is_err());
    }
}
