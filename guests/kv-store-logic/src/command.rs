//! The `kv-store` grammar: the `kv` commands (`kv-command`, whose answers
//! and error messages stay byte for byte the `kv` guest's) plus revisions,
//! compare-and-swap, transactions and leases.
//!
//! ```text
//! tick      = ""                                  (zero bytes, apply only)
//! put       = "put" SP+ key [SP value] [SP option]
//! option    = "ttl=" digits | "lease=" digits     (the value's last word)
//! get-meta  = "get" SP+ key SP+ "meta"
//! cas       = "cas" SP+ key SP+ revision [SP value] [SP option]
//! txn       = "txn" SP+ json                      (see `txn`)
//! lease     = "lease" SP+ ( "grant" SP+ ttl | "keepalive" SP+ id
//!                         | "revoke" SP+ id | "ttl" SP+ id | "list" )
//! ```
//!
//! As in `kv`, leading whitespace and one trailing line ending are ignored
//! and a value is verbatim (it may contain spaces). A put's (or cas's) last
//! word, when it is `ttl=N` or `lease=N` (N decimal), is that option, not
//! part of the value; `ttl=0` means "no lease", so `put k x ttl=5 ttl=0`
//! stores `x ttl=5` without a lease. Anything else (`get`, `delete`,
//! `list`, `count`, unknown verbs, errors) is parsed by `kv-command`.

use kv_command::{Command, validate_key, validate_value};

use crate::txn::Txn;

/// How a put or cas treats leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOption {
    /// No option (or `ttl=0`): the key is attached to no lease afterwards
    /// (as etcd: a put without a lease detaches the key from its lease).
    None,
    /// `lease=ID`: attach to an existing lease.
    Lease(u64),
    /// `ttl=SECONDS`: grant a lease of this entry for the key and attach.
    Ttl(u64),
}

/// A parsed `kv-store` command or query.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreCommand<'a> {
    /// The empty command: expire what is due, answer `OK`.
    Tick,
    /// `get`, `delete`, `list`, `count` as in `kv`.
    Kv(Command<'a>),
    /// `put KEY VALUE [option]`.
    Put {
        key: &'a str,
        value: &'a str,
        lease: LeaseOption,
    },
    /// `get KEY meta`.
    GetMeta {
        key: &'a str,
    },
    /// `cas KEY EXPECTED_REVISION VALUE [option]`.
    Cas {
        key: &'a str,
        expected: u64,
        value: &'a str,
        lease: LeaseOption,
    },
    /// `txn JSON`.
    Txn(Box<Txn>),
    LeaseGrant {
        ttl_secs: u64,
    },
    LeaseKeepalive {
        id: u64,
    },
    LeaseRevoke {
        id: u64,
    },
    LeaseTtl {
        id: u64,
    },
    LeaseList,
}

const LEASE_HELP: &str = "expected `lease grant <ttl seconds>`, `lease keepalive <id>`, \
                          `lease revoke <id>`, `lease ttl <id>` or `lease list`";

impl<'a> StoreCommand<'a> {
    /// Parse a command (from `apply`: the empty command is a [`Self::Tick`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        if bytes.is_empty() {
            return Ok(Self::Tick);
        }
        Self::parse_request(bytes)
    }

    /// Parse a query (the empty request is an error, as in `kv`).
    pub fn parse_request(bytes: &'a [u8]) -> Result<Self, String> {
        // Invalid UTF-8 and the empty command get kv's own errors.
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Command::parse(bytes).map(Self::Kv);
        };
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text)
            .trim_start();
        let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
        match verb {
            "put" => match Command::parse(bytes)? {
                Command::Put { key, value } => {
                    let (value, lease) = split_option(value)?;
                    Ok(Self::Put { key, value, lease })
                }
                other => Ok(Self::Kv(other)),
            },
            "get" => {
                let words: Vec<&str> = rest.split(' ').filter(|w| !w.is_empty()).collect();
                match words.as_slice() {
                    [key, "meta"] => {
                        validate_key(key)?;
                        Ok(Self::GetMeta { key })
                    }
                    _ => Command::parse(bytes).map(Self::Kv),
                }
            }
            "cas" => parse_cas(rest),
            "txn" => {
                let json = rest.trim_start_matches(' ');
                if json.is_empty() {
                    return Err("`txn` needs a JSON transaction: `txn {\"compare\":[...],\
                                \"success\":[...],\"failure\":[...]}`"
                        .to_owned());
                }
                Ok(Self::Txn(Box::new(Txn::parse(json)?)))
            }
            "lease" => parse_lease(rest),
            _ => Command::parse(bytes).map(Self::Kv),
        }
    }

    /// The command's verb, for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Tick => "the empty command",
            Self::Kv(Command::Put { .. }) | Self::Put { .. } => "put",
            Self::Kv(Command::Delete { .. }) => "delete",
            Self::Kv(Command::Get { .. }) | Self::GetMeta { .. } => "get",
            Self::Kv(Command::List { .. }) => "list",
            Self::Kv(Command::Count) => "count",
            Self::Cas { .. } => "cas",
            Self::Txn(_) => "txn",
            Self::LeaseGrant { .. } => "lease grant",
            Self::LeaseKeepalive { .. } => "lease keepalive",
            Self::LeaseRevoke { .. } => "lease revoke",
            Self::LeaseTtl { .. } => "lease ttl",
            Self::LeaseList => "lease list",
        }
    }
}

/// Split a trailing `ttl=N` / `lease=N` word off a put's value.
fn split_option(value: &str) -> Result<(&str, LeaseOption), String> {
    let (before, last) = match value.rsplit_once(' ') {
        Some((before, last)) => (before, last),
        None => ("", value),
    };
    let option = if let Some(digits) = last.strip_prefix("ttl=") {
        (is_number(digits)).then(|| number("ttl", digits).map(LeaseOption::Ttl))
    } else if let Some(digits) = last.strip_prefix("lease=") {
        (is_number(digits)).then(|| number("lease", digits).map(LeaseOption::Lease))
    } else {
        None
    };
    match option {
        None => Ok((value, LeaseOption::None)),
        Some(option) => match option? {
            LeaseOption::Ttl(0) => Ok((before, LeaseOption::None)),
            LeaseOption::Lease(0) => Err("`lease=0` names no lease (ids start at 1)".to_owned()),
            option => Ok((before, option)),
        },
    }
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

fn number(what: &str, text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{what} `{}` is not a number from 0 to 2^64-1", short(text)))
}

fn short(text: &str) -> &str {
    match text.char_indices().nth(32) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn parse_cas(rest: &str) -> Result<StoreCommand<'_>, String> {
    const USAGE: &str = "`cas <key> <expected revision> <value>`";
    let rest = rest.trim_start_matches(' ');
    let (key, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if key.is_empty() {
        return Err(format!("`cas` needs a key: {USAGE}"));
    }
    validate_key(key)?;
    let rest = rest.trim_start_matches(' ');
    let (revision, value) = rest.split_once(' ').unwrap_or((rest, ""));
    if !is_number(revision) {
        return Err(format!(
            "`cas` needs the expected revision (0: the key must not exist) after the key: {USAGE}"
        ));
    }
    let expected = number("revision", revision)?;
    validate_value(value)?;
    let (value, lease) = split_option(value)?;
    Ok(StoreCommand::Cas {
        key,
        expected,
        value,
        lease,
    })
}

fn parse_lease(rest: &str) -> Result<StoreCommand<'_>, String> {
    let words: Vec<&str> = rest.split(' ').filter(|w| !w.is_empty()).collect();
    let id = |text: &str| -> Result<u64, String> {
        match number("lease id", text)? {
            0 => Err("lease ids start at 1".to_owned()),
            id => Ok(id),
        }
    };
    match words.as_slice() {
        ["grant", ttl] => Ok(StoreCommand::LeaseGrant {
            ttl_secs: number("ttl", ttl)?,
        }),
        ["keepalive", n] => Ok(StoreCommand::LeaseKeepalive { id: id(n)? }),
        ["revoke", n] => Ok(StoreCommand::LeaseRevoke { id: id(n)? }),
        ["ttl", n] => Ok(StoreCommand::LeaseTtl { id: id(n)? }),
        ["list"] => Ok(StoreCommand::LeaseList),
        _ => Err(LEASE_HELP.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StoreCommand<'_>, String> {
        StoreCommand::parse(text.as_bytes())
    }

    #[test]
    fn t10_put_options_are_the_last_word() {
        let put = |key, value, lease| Ok(StoreCommand::Put { key, value, lease });
        assert_eq!(parse("put k v"), put("k", "v", LeaseOption::None));
        assert_eq!(
            parse("put k a b ttl=5"),
            put("k", "a b", LeaseOption::Ttl(5))
        );
        assert_eq!(
            parse("put k v lease=7\n"),
            put("k", "v", LeaseOption::Lease(7))
        );
        assert_eq!(parse("put k ttl=5"), put("k", "", LeaseOption::Ttl(5)));
        assert_eq!(
            parse("put k x ttl=5 ttl=0"),
            put("k", "x ttl=5", LeaseOption::None)
        );
        assert_eq!(parse("put k ttl=x"), put("k", "ttl=x", LeaseOption::None));
        assert_eq!(parse("put k ttl="), put("k", "ttl=", LeaseOption::None));
        assert_eq!(parse("put k a  ttl=1"), put("k", "a ", LeaseOption::Ttl(1)));
        assert!(parse("put k v ttl=99999999999999999999999").is_err());
        assert!(parse("put k v lease=0").is_err());
        // kv's own errors.
        assert_eq!(
            parse("put"),
            Err(Command::parse(b"put").expect_err("kv refuses it"))
        );
    }

    #[test]
    fn t10_cas_get_meta_lease() {
        assert_eq!(
            parse("cas k 12 new value"),
            Ok(StoreCommand::Cas {
                key: "k",
                expected: 12,
                value: "new value",
                lease: LeaseOption::None
            })
        );
        assert_eq!(
            parse("cas  k  0"),
            Ok(StoreCommand::Cas {
                key: "k",
                expected: 0,
                value: "",
                lease: LeaseOption::None
            })
        );
        assert_eq!(
            parse("cas k 3 v ttl=2"),
            Ok(StoreCommand::Cas {
                key: "k",
                expected: 3,
                value: "v",
                lease: LeaseOption::Ttl(2)
            })
        );
        for bad in ["cas", "cas k", "cas k x v", "cas k -1 v", "cas a\tb 1 v"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse("get k meta"), Ok(StoreCommand::GetMeta { key: "k" }));
        assert_eq!(
            parse("get k"),
            Ok(StoreCommand::Kv(Command::Get { key: "k" }))
        );
        assert_eq!(
            parse("get k other"),
            Err(Command::parse(b"get k other").expect_err("kv refuses it"))
        );
        assert_eq!(
            parse("lease grant 10"),
            Ok(StoreCommand::LeaseGrant { ttl_secs: 10 })
        );
        assert_eq!(
            parse("lease keepalive 4"),
            Ok(StoreCommand::LeaseKeepalive { id: 4 })
        );
        assert_eq!(
            parse("lease revoke 4"),
            Ok(StoreCommand::LeaseRevoke { id: 4 })
        );
        assert_eq!(parse("lease ttl 4"), Ok(StoreCommand::LeaseTtl { id: 4 }));
        assert_eq!(parse("lease list"), Ok(StoreCommand::LeaseList));
        for bad in [
            "lease",
            "lease grant",
            "lease ttl 0",
            "lease list 1",
            "lease x 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn t10_empty_is_a_tick_only_as_a_command() {
        assert_eq!(parse(""), Ok(StoreCommand::Tick));
        assert!(StoreCommand::parse_request(b"").is_err());
        // A line ending alone is kv's empty-command error, not a tick.
        assert!(parse("\n").is_err());
        assert_eq!(
            parse("frobnicate x"),
            Err(Command::parse(b"frobnicate x").expect_err("kv refuses it"))
        );
    }
}
