//! `txn JSON`: etcd's Txn in one entry. Every compare is evaluated against
//! the store as the entry finds it (after what expired); if all hold, the
//! `success` operations run in order, otherwise the `failure` ones.
//!
//! ```json
//! {"compare": [{"key": "k", "target": "mod_revision", "op": "=", "value": 12}],
//!  "success": [{"op": "put", "key": "k", "value": "v", "ttl": 10},
//!              {"op": "get", "key": "other"}],
//!  "failure": [{"op": "get", "key": "k"}]}
//! ```
//!
//! - `target`: `value` (a string; compared byte-wise; a compare of the
//!   value of an absent key is false whatever the op, as in etcd),
//!   `mod_revision`, `create_revision`, `version` (numbers; 0 for an absent
//!   key), `exists` (a bool; op `=` or `!=` only).
//! - `op`: `=`, `!=`, `<`, `>`.
//! - operations: `{"op":"put","key":K,"value":V}` with at most one of
//!   `"ttl":SECONDS` or `"lease":ID`, `{"op":"delete","key":K}`,
//!   `{"op":"get","key":K}`. Operations see the writes of the ones before
//!   them; every write of the entry carries its index as `mod_revision`.
//! - The answer: `{"succeeded":BOOL,"results":[...]}`, one result per
//!   operation run: `{"op":"put","key":K,"mod_revision":N}`,
//!   `{"op":"delete","key":K,"deleted":0|1}`, and for `get` the key's
//!   `get KEY meta` object with `"op":"get","found":true` first, or
//!   `{"op":"get","key":K,"found":false}`.
//! - Unknown fields, a malformed document, a bad key or value, more than
//!   [`MAX_TXN_COMPARES`] compares or [`MAX_TXN_OPS`] operations in a
//!   branch: an error, and nothing is written.

use serde::Deserialize;

use crate::command::LeaseOption;

/// Most compares in one `txn`.
pub const MAX_TXN_COMPARES: usize = 64;
/// Most operations in one branch of a `txn`.
pub const MAX_TXN_OPS: usize = 64;

/// A parsed and checked transaction.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Txn {
    #[serde(default)]
    pub compare: Vec<Compare>,
    #[serde(default)]
    pub success: Vec<Op>,
    #[serde(default)]
    pub failure: Vec<Op>,
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub key: String,
    pub target: Target,
    pub op: CmpOp,
    pub value: serde_json::Value,
}

/// What a compare looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Value,
    ModRevision,
    CreateRevision,
    Version,
    Exists,
}

/// How a compare compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CmpOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = ">")]
    Gt,
}

impl CmpOp {
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            CmpOp::Eq => ordering == Equal,
            CmpOp::Ne => ordering != Equal,
            CmpOp::Lt => ordering == Less,
            CmpOp::Gt => ordering == Greater,
        }
    }
}

/// One operation of a branch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Put {
        key: String,
        value: String,
        #[serde(default)]
        ttl: Option<u64>,
        #[serde(default)]
        lease: Option<u64>,
    },
    Delete {
        key: String,
    },
    Get {
        key: String,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Get { key } => key,
        }
    }

    pub fn is_read_only(&self) -> bool {
        matches!(self, Op::Get { .. })
    }

    /// A put's lease option (`ttl` 0 is no lease, as in the text form).
    pub fn lease_option(&self) -> LeaseOption {
        match self {
            Op::Put {
                ttl: Some(ttl @ 1..),
                ..
            } => LeaseOption::Ttl(*ttl),
            Op::Put {
                lease: Some(id), ..
            } => LeaseOption::Lease(*id),
            _ => LeaseOption::None,
        }
    }
}

impl Txn {
    /// Parse and check a transaction's JSON.
    pub fn parse(json: &str) -> Result<Txn, String> {
        // serde would also take a struct from an array of its fields.
        if !json.trim_start().starts_with('{') {
            return Err("`txn`: bad transaction: expected a JSON object".to_owned());
        }
        let txn: Txn =
            serde_json::from_str(json).map_err(|e| format!("`txn`: bad transaction: {e}"))?;
        if txn.compare.len() > MAX_TXN_COMPARES {
            return Err(format!(
                "`txn`: {} compares; the limit is {MAX_TXN_COMPARES}",
                txn.compare.len()
            ));
        }
        for (name, ops) in [("success", &txn.success), ("failure", &txn.failure)] {
            if ops.len() > MAX_TXN_OPS {
                return Err(format!(
                    "`txn`: {} operations in `{name}`; the limit is {MAX_TXN_OPS}",
                    ops.len()
                ));
            }
            for op in ops {
                kv_command::validate_key(op.key()).map_err(|e| format!("`txn`: {e}"))?;
                if let Op::Put {
                    value, ttl, lease, ..
                } = op
                {
                    kv_command::validate_value(value).map_err(|e| format!("`txn`: {e}"))?;
                    if ttl.is_some() && lease.is_some() {
                        return Err(format!(
                            "`txn`: the put of `{}` has both `ttl` and `lease`; give one",
                            op.key()
                        ));
                    }
                    if *lease == Some(0) {
                        return Err("`txn`: `lease` 0 names no lease (ids start at 1)".to_owned());
                    }
                }
            }
        }
        for compare in &txn.compare {
            kv_command::validate_key(&compare.key).map_err(|e| format!("`txn`: {e}"))?;
            let fits = match compare.target {
                Target::Value => compare.value.is_string(),
                Target::ModRevision | Target::CreateRevision | Target::Version => {
                    compare.value.is_u64()
                }
                Target::Exists => {
                    compare.value.is_boolean() && matches!(compare.op, CmpOp::Eq | CmpOp::Ne)
                }
            };
            if !fits {
                return Err(format!(
                    "`txn`: the compare of `{}`'s {:?} needs {}",
                    compare.key,
                    compare.target,
                    match compare.target {
                        Target::Value => "a string value",
                        Target::Exists => "a bool value and op `=` or `!=`",
                        _ => "a whole number from 0 to 2^64-1",
                    }
                ));
            }
        }
        Ok(txn)
    }

    /// Whether neither branch writes (so it may run as a query).
    pub fn is_read_only(&self) -> bool {
        self.success
            .iter()
            .chain(&self.failure)
            .all(Op::is_read_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t20_parses_etcd_shaped_transactions() {
        let txn = Txn::parse(
            r#"{"compare":[{"key":"k","target":"mod_revision","op":"=","value":3},
                           {"key":"k","target":"exists","op":"!=","value":false},
                           {"key":"k","target":"value","op":">","value":"a"}],
                "success":[{"op":"put","key":"k","value":"v","ttl":5},{"op":"get","key":"k"}],
                "failure":[{"op":"delete","key":"k"}]}"#,
        )
        .expect("a valid txn");
        assert_eq!(txn.compare.len(), 3);
        assert_eq!(txn.success[0].lease_option(), LeaseOption::Ttl(5));
        assert!(!txn.is_read_only());
        assert!(Txn::parse("{}").expect("empty").is_read_only());
    }

    #[test]
    fn t20_refuses_what_it_does_not_understand() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"compares":[]}"#,
            r#"{"success":[{"op":"put","key":"k","value":"v","extra":1}]}"#,
            r#"{"success":[{"op":"upsert","key":"k"}]}"#,
            r#"{"success":[{"op":"put","key":"k"}]}"#,
            r#"{"success":[{"op":"put","key":"a b","value":"v"}]}"#,
            r#"{"success":[{"op":"put","key":"k","value":"v","ttl":1,"lease":2}]}"#,
            r#"{"compare":[{"key":"k","target":"version","op":"=","value":"1"}]}"#,
            r#"{"compare":[{"key":"k","target":"version","op":"=","value":-1}]}"#,
            r#"{"compare":[{"key":"k","target":"value","op":"=","value":1}]}"#,
            r#"{"compare":[{"key":"k","target":"exists","op":"<","value":true}]}"#,
            r#"{"compare":[{"key":"k","target":"lease","op":"=","value":1}]}"#,
            r#"{"compare":[{"key":"k","target":"value","op":"==","value":"v"}]}"#,
        ] {
            assert!(Txn::parse(bad).is_err(), "{bad}");
        }
        let many = format!(
            r#"{{"success":[{}]}}"#,
            vec![r#"{"op":"get","key":"k"}"#; MAX_TXN_OPS + 1].join(",")
        );
        assert!(
            Txn::parse(&many)
                .expect_err("over the limit")
                .contains("limit")
        );
    }
}
